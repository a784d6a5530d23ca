package lock_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lock"
)

// TestDoReleasesWhenFnPanics: the function run under a Mutex or a
// Semaphore permit panics and the caller recovers. The lock must not leak:
// it is released before the panic reaches the caller, its context has
// ended, nothing renews it any more, and another holder takes it at once.
func TestDoReleasesWhenFnPanics(t *testing.T) {
	for _, permits := range []int{1, 2} {
		t.Run(map[int]string{1: "mutex", 2: "semaphore"}[permits], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fakelease.New()
				do := func(id string, fn func(context.Context, lease.Token) error) error {
					if permits == 1 {
						return newMutex(t, srv, "dolock", id).Do(t.Context(), fn)
					}
					s, err := lock.NewSemaphore(config(srv, "dolock", id), permits)
					if err != nil {
						t.Fatal(err)
					}
					return s.Do(t.Context(), fn)
				}
				var heldCtx context.Context
				var recovered any
				func() {
					defer func() { recovered = recover() }()
					_ = do("a", func(ctx context.Context, tok lease.Token) error {
						heldCtx = ctx
						time.Sleep(3 * time.Second) // renewing meanwhile
						panic("migration failed")
					})
				}()
				if recovered != "migration failed" {
					t.Fatalf("recovered %v, want the function's panic", recovered)
				}
				if !errors.Is(context.Cause(heldCtx), lock.ErrReleased) {
					t.Errorf("the lock's context: cause %v, want ErrReleased", context.Cause(heldCtx))
				}
				for _, l := range []string{"dolock", "dolock-0", "dolock-1"} {
					if obj := srv.Lease(ns, l); obj != nil && *obj.Spec.HolderIdentity != "" {
						t.Errorf("lease %s still held by %q after the panic", l, *obj.Spec.HolderIdentity)
					}
				}
				updates := srv.Count("update")
				time.Sleep(3 * lock.DefaultLeaseDuration)
				if n := srv.Count("update") - updates; n != 0 {
					t.Errorf("%d writes after the panic, want none (nothing renews)", n)
				}
				start := time.Now()
				if err := do("b", func(context.Context, lease.Token) error { return nil }); err != nil {
					t.Fatal(err)
				}
				if d := time.Since(start); d != 0 {
					t.Errorf("b waited %v for the lock, want it at once", d)
				}
			})
		})
	}
}

// TestDoReturnsFnErrorAndReleases: Do returns the function's error and
// releases the lock.
func TestDoReturnsFnErrorAndReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		m := newMutex(t, srv, "doerr", "a")
		boom := errors.New("boom")
		var token lease.Token
		err := m.Do(t.Context(), func(_ context.Context, tok lease.Token) error { token = tok; return boom })
		if !errors.Is(err, boom) {
			t.Errorf("Do = %v, want the function's error", err)
		}
		if token.IsZero() {
			t.Error("the function got no fencing token")
		}
		if h, _ := holderOf(t, srv, "doerr"); h != "" {
			t.Errorf("holder %q after Do, want released", h)
		}
	})
}
