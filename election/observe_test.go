package election_test

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/lease"
)

// TestObserveReportsAPIError: while the lease cannot be read, Observe says
// why (Leader.Err), and the error clears once the watch works again.
func TestObserveReportsAPIError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		down := func(string) error { return apierrors.NewServiceUnavailable("apiserver is restarting") }
		srv.Fail("get", down)
		srv.Fail("watch", down)
		e := newElector(t, srv, "a")
		var r runner
		stop := r.start(t.Context(), "a", e, untilDone)
		time.Sleep(3 * time.Second)
		if l, _ := e.Observe(); !errors.Is(l.Err, lease.ErrUnavailable) || l.Synced {
			t.Errorf("Observe while the apiserver is down: Err %v, Synced %v; want ErrUnavailable and not synced", l.Err, l.Synced)
		}
		srv.Fail("get", nil)
		srv.Fail("watch", nil)
		time.Sleep(3 * time.Second)
		if l, _ := e.Observe(); l.Err != nil || !l.Synced {
			t.Errorf("Observe after the apiserver came back: Err %v, Synced %v; want nil and synced", l.Err, l.Synced)
		}
		stop()
		r.wg.Wait()
	})
}
