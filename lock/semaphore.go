package lock

import (
	"context"
	"fmt"
	"sync"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// Semaphore is a counted lock: at most N holders at once. It uses N Leases,
// Name-0 … Name-(N−1), one per permit, each an ordinary lock; an acquirer
// watches all of them and takes whichever frees first. Separate Leases keep
// each permit's renewals and races independent (no hot object that every
// holder writes), and each permit stays readable by kubectl and compatible
// with the Lease conventions.
//
// Semaphore is safe for concurrent use; each Acquire is independent.
type Semaphore struct {
	mem     memory
	cfg     settings
	permits int
	names   []string
}

// NewSemaphore returns a Semaphore with the given number of permits.
func NewSemaphore(cfg Config, permits int) (*Semaphore, error) {
	set, err := cfg.complete(permits)
	if err != nil {
		return nil, err
	}
	s := &Semaphore{cfg: set, permits: permits}
	for i := range permits {
		s.names = append(s.names, permitName(cfg.Name, i))
	}
	return s, nil
}

// Permits returns N.
func (s *Semaphore) Permits() int { return s.permits }

// Identity returns the holder identity this Semaphore writes.
func (s *Semaphore) Identity() string { return s.cfg.Identity }

// Acquire blocks until a permit is held, waking on the watch, not by polling.
// A timeout is a context deadline; on ctx end it returns ctx.Err().
func (s *Semaphore) Acquire(ctx context.Context) (*Held, error) {
	return acquire(ctx, s.cfg, s.names, false, &s.mem)
}

// TryAcquire takes a free permit or returns a *LockedError (errors.Is
// ErrLocked) listing the holders, without waiting.
func (s *Semaphore) TryAcquire(ctx context.Context) (*Held, error) {
	return acquire(ctx, s.cfg, s.names, true, &s.mem)
}

// Do takes a permit as Acquire does, runs fn under it with the permit's
// context and fencing token, and releases the permit when fn returns — or
// panics: the permit is released before the panic continues.
func (s *Semaphore) Do(ctx context.Context, fn func(ctx context.Context, token lease.Token) error) error {
	h, err := s.Acquire(ctx)
	if err != nil {
		return err
	}
	return h.do(ctx, fn)
}

func acquire(ctx context.Context, cfg settings, names []string, try bool, mem *memory) (*Held, error) {
	kind, sibling := "mutex", permitName(cfg.Name, 0)
	if len(names) > 1 || names[0] != cfg.Name {
		kind, sibling = fmt.Sprintf("semaphore/%d", len(names)), cfg.Name
	}
	if err := checkSibling(ctx, cfg, sibling, kind); err != nil {
		return nil, err
	}
	w, err := newWaiter(cfg, names, kind)
	if err != nil {
		return nil, err
	}
	for i, o := range w.obs {
		o.Seed(mem.get(names[i]))
	}
	w.start(ctx)
	term, i, err := w.acquire(ctx, try)
	for j, o := range w.obs {
		st, _ := o.State()
		mem.put(names[j], st)
	}
	if err != nil {
		w.stop(-1)
		return nil, err
	}
	w.stop(i)
	return &Held{term: term, permit: i, lease: fmt.Sprintf("%s/%s", cfg.Namespace, names[i]), w: w, timeout: cfg.Timing.RenewDeadline}, nil
}

// checkSibling refuses to lock when the other kind of lock of the same name
// is recorded on its Lease: a Mutex "x" (Lease x) and a Semaphore "x"
// (Leases x-0, x-1, ...) share no Lease and would not exclude each other.
// It is a check at each acquisition, not a lock: a Mutex and a Semaphore
// that both start on a name never used before can still both proceed.
// A Lease that is missing or cannot be read (RBAC confined to the lock's
// own names) is no objection.
func checkSibling(ctx context.Context, cfg settings, name, kind string) error {
	c, err := lease.NewClient(cfg.Leases, cfg.Namespace, name)
	if err != nil {
		return nil
	}
	s, err := c.Get(ctx)
	if err != nil || s.Kind == "" || s.Kind == kind {
		return nil
	}
	if (kind == "mutex") == (s.Kind == "mutex") {
		return nil // the same family under another name (x-0 as a mutex of its own)
	}
	return fmt.Errorf("lock: %w", &holder.KindError{Namespace: cfg.Namespace, Name: name, Want: kind, Found: s.Kind})
}

// memory keeps, per Lease, the last state seen by an earlier acquisition, so
// that the next one continues its view of a crashed holder's expiry instead
// of starting the wait over.
type memory struct {
	mu   sync.Mutex
	last map[string]holder.State
}

func (m *memory) get(name string) holder.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last[name]
}

func (m *memory) put(name string, st holder.State) {
	if !st.Synced {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil {
		m.last = map[string]holder.State{}
	}
	m.last[name] = st
}
