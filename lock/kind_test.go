package lock_test

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lock"
)

// TestMutexAndSemaphoreOfOneNameExcludeEachOther: a Mutex "mix" and a
// Semaphore "mix" use different Leases, so without a record of the kind they
// would both hold. Whichever takes the name first records its kind; the
// other is refused with an error that names the Lease and both kinds, and
// writes nothing. Semaphores of one name with different permit counts are
// refused the same way.
func TestMutexAndSemaphoreOfOneNameExcludeEachOther(t *testing.T) {
	sem := func(t *testing.T, srv *fakelease.Server, id string, permits int) *lock.Semaphore {
		s, err := lock.NewSemaphore(config(srv, "mix", id), permits)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	refused := func(t *testing.T, err error, lease, found string) {
		t.Helper()
		if !errors.Is(err, lock.ErrKindMismatch) || !strings.Contains(err.Error(), lease) || !strings.Contains(err.Error(), found) {
			t.Fatalf("got %v, want ErrKindMismatch naming %s and %q", err, lease, found)
		}
	}
	t.Run("mutex first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fakelease.New()
			h, err := newMutex(t, srv, "mix", "a").Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if k := srv.Lease(ns, "mix").Annotations[lease.KindAnnotation]; k != "mutex" {
				t.Errorf("kind recorded %q, want mutex", k)
			}
			updates := srv.Count("update")
			_, err = sem(t, srv, "b", 2).TryAcquire(t.Context())
			refused(t, err, "default/mix", "a mutex")
			if srv.Lease(ns, "mix-0") != nil || srv.Lease(ns, "mix-1") != nil || srv.Count("update") != updates {
				t.Error("the refused semaphore wrote a Lease")
			}
			mustRelease(t, h)
		})
	})
	t.Run("semaphore first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fakelease.New()
			h, err := sem(t, srv, "a", 2).Acquire(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if k := srv.Lease(ns, "mix").Annotations[lease.KindAnnotation]; k != "semaphore/2" {
				t.Errorf("Lease mix records %q, want semaphore/2", k)
			}
			_, err = newMutex(t, srv, "mix", "b").TryLock(t.Context())
			refused(t, err, "default/mix", "a semaphore with 2 permits")
			_, err = newMutex(t, srv, "mix", "b").Lock(t.Context())
			refused(t, err, "default/mix", "a semaphore with 2 permits")
			if h := *srv.Lease(ns, "mix").Spec.HolderIdentity; h != "" {
				t.Errorf("the refused mutex took Lease mix (holder %q)", h)
			}
			mustRelease(t, h)
		})
	})
	t.Run("other permit count", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fakelease.New()
			h, err := sem(t, srv, "a", 2).Acquire(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			_, err = sem(t, srv, "b", 3).Acquire(t.Context())
			refused(t, err, "default/mix", "a semaphore with 2 permits")
			mustRelease(t, h)
			// The same count is fine.
			h2, err := sem(t, srv, "c", 2).TryAcquire(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			mustRelease(t, h2)
		})
	})
}
