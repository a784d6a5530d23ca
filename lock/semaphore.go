package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// Semaphore is a counted lock: at most N holders at once. It uses N Leases,
// Name-0 … Name-(N−1), one per permit, each an ordinary lock, and one queue
// for all of them: a releasing holder hands its permit to the first waiter.
// A waiter near the head of the queue follows all permits with one watch,
// whatever N; one far back watches only the N+1 entries just ahead of it.
// Separate Leases keep each permit's renewals independent (no hot object
// that every holder writes), and each permit stays readable by kubectl and
// compatible with the Lease conventions.
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
	kind := "mutex"
	if len(names) > 1 || names[0] != cfg.Name {
		kind = fmt.Sprintf("semaphore/%d", len(names))
		if err := claimName(ctx, cfg, kind); err != nil {
			return nil, err
		}
	}
	w, err := newWaiter(cfg, names, kind)
	if err != nil {
		return nil, err
	}
	w.mem = mem
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
		w.close()
		return nil, err
	}
	return &Held{term: term, permit: i, lease: fmt.Sprintf("%s/%s", cfg.Namespace, names[i]), w: w, timeout: cfg.Timing.RenewDeadline}, nil
}

// claimName records on the Lease named like the lock itself that a
// Semaphore of that many permits uses the name. A Mutex "x" holds Lease x
// and a Semaphore "x" holds Leases x-0, x-1, ...: they share no Lease, so
// without this record they would not exclude each other. With it, a Mutex
// "x" finds Lease x recorded as a semaphore and refuses (the candidate's
// kind check), and a Semaphore finds Lease x recorded as a mutex, or held
// without a record, and refuses here. Both decide on conditional writes of
// Lease x, so a Mutex and a Semaphore that start together cannot both
// proceed.
func claimName(ctx context.Context, cfg settings, kind string) error {
	c, err := lease.NewClient(cfg.Leases, cfg.Namespace, cfg.Name)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	for attempt := 0; ; attempt++ {
		s, err := c.Get(ctx)
		if errors.Is(err, lease.ErrNotFound) {
			s, err = c.Create(ctx, lease.Record{}.Released(cfg.Clock.Now()))
		}
		switch {
		case errors.Is(err, lease.ErrAlreadyExists) && attempt < 3:
			continue
		case err != nil:
			return fmt.Errorf("lock: record semaphore %s/%s: %w", cfg.Namespace, cfg.Name, err)
		case s.Kind == kind:
			return nil
		case s.Kind != "":
			return fmt.Errorf("lock: %w", &holder.KindError{Namespace: cfg.Namespace, Name: cfg.Name, Want: kind, Found: s.Kind})
		case s.Record.Held():
			return fmt.Errorf("lock: %w", &holder.KindError{Namespace: cfg.Namespace, Name: cfg.Name, Want: kind, Found: "mutex"})
		}
		// The label puts it in the view of a Mutex of this name, which
		// then finds it recorded as a semaphore.
		s = lease.WithLabel(lease.WithAnnotation(s, lease.KindAnnotation, kind), queueLabel, queueKey("mutex", cfg.Name))
		_, err = c.Update(ctx, s, s.Record, 0)
		if err == nil {
			return nil
		}
		if !errors.Is(err, lease.ErrConflict) || attempt >= 3 {
			return fmt.Errorf("lock: record semaphore %s/%s: %w", cfg.Namespace, cfg.Name, err)
		}
	}
}

// memory keeps, per Lease, the last state seen by an earlier acquisition, so
// that the next one continues its view of a crashed holder's expiry instead
// of starting the wait over.
type memory struct {
	mu   sync.Mutex
	last map[string]holder.State
	// The queue as the last waiter that followed it whole left it (no watch).
	// The next call's first read of the queue replays the changes since
	// then instead of reading every entry (a Mutex that locks again right
	// after releasing).
	queue  queueRead
	keptAt time.Time
}

func (m *memory) keepQueue(q queueRead, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.queue, m.keptAt = q, now
}

// keptQueue returns the queue kept no earlier than since; ok is false if
// none was.
func (m *memory) keptQueue(since time.Time) (q queueRead, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.queue.entries == nil || m.keptAt.Before(since) {
		return queueRead{}, false
	}
	return m.queue, true
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
