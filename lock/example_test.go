package lock_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/lock"
)

// A migration runs under a Mutex. Guarded work uses the Held's Context (it
// ends if the lock is lost) and passes the fencing token to the resource it
// changes. Another process that only tries to lock learns who holds it.
//
// The example uses an in-memory Leases API; in a cluster, Leases is
// clientset.CoordinationV1().
func Example() {
	ctx := context.Background()
	leases := fakelease.New()

	m, err := lock.NewMutex(lock.Config{Leases: leases, Namespace: "db", Name: "migrate", Identity: "migrator-1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	held, err := m.Lock(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("locked", held.Lease(), "with a token:", !held.Token().IsZero())

	other, err := lock.NewMutex(lock.Config{Leases: leases, Namespace: "db", Name: "migrate", Identity: "migrator-2"})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = other.TryLock(ctx)
	var locked *lock.LockedError
	if errors.Is(err, lock.ErrLocked) && errors.As(err, &locked) {
		fmt.Println("migrator-2 cannot lock: held by", locked.Holders[0].Identity)
	}

	// ... migrate(held.Context(), held.Token()) ...
	if err := held.Release(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("released:", errors.Is(context.Cause(held.Context()), lock.ErrReleased))

	next, err := other.TryLock(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer next.Release(ctx)
	fmt.Println("migrator-2 locked it; newer token:", next.Token() > held.Token())
	// Output:
	// locked db/migrate with a token: true
	// migrator-2 cannot lock: held by migrator-1
	// released: true
	// migrator-2 locked it; newer token: true
}

// A Semaphore with 2 permits admits two holders; a third TryAcquire is told
// who holds both permits.
func ExampleSemaphore() {
	ctx := context.Background()
	leases := fakelease.New()
	sems := map[string]*lock.Semaphore{}
	for _, id := range []string{"job-a", "job-b", "job-c"} {
		s, err := lock.NewSemaphore(lock.Config{Leases: leases, Namespace: "ci", Name: "runners", Identity: id}, 2)
		if err != nil {
			fmt.Println(err)
			return
		}
		sems[id] = s
	}
	var helds []*lock.Held
	for _, id := range []string{"job-a", "job-b"} {
		h, err := sems[id].Acquire(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer h.Release(ctx)
		helds = append(helds, h)
	}
	fmt.Println("two different permits:", helds[0].Lease() != helds[1].Lease())

	_, err := sems["job-c"].TryAcquire(ctx)
	var locked *lock.LockedError
	if errors.As(err, &locked) {
		fmt.Println("job-c must wait:", len(locked.Holders), "permits held")
	}
	// Output:
	// two different permits: true
	// job-c must wait: 2 permits held
}
