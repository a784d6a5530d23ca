package lock

import (
	"context"

	"github.com/leasehold/leasehold/lease"
)

// Mutex is a lock on one Lease. Lock blocks until the lease is released or
// expires in this process's view (driven by a watch, no polling); TryLock does
// not wait. Each acquisition returns a fresh *Held with its own fencing
// token. Mutex is safe for concurrent use.
type Mutex struct {
	mem memory
	cfg settings
}

// NewMutex returns a Mutex on the Lease cfg.Namespace/cfg.Name.
func NewMutex(cfg Config) (*Mutex, error) {
	s, err := cfg.complete(1)
	if err != nil {
		return nil, err
	}
	return &Mutex{cfg: s}, nil
}

// Identity returns the holder identity this Mutex writes.
func (m *Mutex) Identity() string { return m.cfg.Identity }

// Lock blocks until the lock is held or ctx ends (returning ctx.Err()). A
// permanent API error (forbidden: the message names the missing verb) is
// returned at once.
func (m *Mutex) Lock(ctx context.Context) (*Held, error) {
	return acquire(ctx, m.cfg, []string{m.cfg.Name}, false, &m.mem)
}

// TryLock takes the lock if it is free in this process's view, else returns
// a *LockedError (errors.Is ErrLocked) naming the holder and when its lease
// expires.
func (m *Mutex) TryLock(ctx context.Context) (*Held, error) {
	return acquire(ctx, m.cfg, []string{m.cfg.Name}, true, &m.mem)
}

// Do takes the lock as Lock does, runs fn under it with the lock's context
// and fencing token, and releases the lock when fn returns — or panics: the
// lock is released before the panic continues. It returns fn's error joined
// with the release's, or Lock's error without calling fn.
func (m *Mutex) Do(ctx context.Context, fn func(ctx context.Context, token lease.Token) error) error {
	h, err := m.Lock(ctx)
	if err != nil {
		return err
	}
	return h.do(ctx, fn)
}
