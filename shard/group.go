package shard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// Func is the work of one shard. It runs on its own goroutine, once per
// acquisition of the shard by this member, under a context that ends before
// any other member may start the same shard, with that acquisition's
// fencing token. It should return soon after ctx ends (context.Cause says
// why: ErrMoved, ErrDeadline, ErrLost, ErrLeaving). Returning nil while ctx
// is still valid means the shard's work is done: it stays owned, and is not
// started again until it moves away and back. Returning an error while ctx
// is valid stops every shard and ends Run with that error.
type Func func(ctx context.Context, shard int, token lease.Token) error

// ErrRunning is returned by Run when the Group is already running.
var ErrRunning = errors.New("shard: Run called while the group is already running")

// Group is this process's membership in a sharded group: K shards spread
// over the live members, each shard run by at most one member at a time.
//
// A Group is safe for concurrent use; Run may be called again after it
// returns, but not concurrently.
type Group struct {
	cfg     Config
	core    holder.Config
	name    string // this member's Lease
	metrics *metrics
	running atomic.Bool

	mu     sync.Mutex
	status Status
	health error
}

// Status is what a member knows about its group.
type Status struct {
	// Identity of this member.
	Identity string
	// Member is true while this member's membership is valid.
	Member bool
	// Members are the live members in this member's view, sorted.
	Members []string
	// Owners is the owner of each shard in this member's view: the member
	// that claims it with the lowest token, "" when none.
	Owners []string
	// Owned are the shards whose work runs in this member, with their
	// tokens.
	Owned map[int]lease.Token
}

// New returns a Group for the Config, or every problem with it.
func New(cfg Config) (*Group, error) {
	core, err := cfg.complete()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer, cfg.Namespace, cfg.Name)
	if err != nil {
		return nil, err
	}
	g := &Group{cfg: cfg, core: core, name: memberLeaseName(cfg.Name, core.Identity), metrics: m}
	g.status = Status{Identity: core.Identity, Owned: map[int]lease.Token{}}
	g.health = errors.New("shard: not running")
	return g, nil
}

// Identity returns this member's identity.
func (g *Group) Identity() string { return g.core.Identity }

// LeaseName returns the name of this member's membership Lease.
func (g *Group) LeaseName() string { return g.name }

// Status returns a copy of the member's current view of the group.
func (g *Group) Status() Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.status
	s.Members = slices.Clone(s.Members)
	s.Owners = slices.Clone(s.Owners)
	s.Owned = make(map[int]lease.Token, len(g.status.Owned))
	for k, v := range g.status.Owned {
		s.Owned[k] = v
	}
	return s
}

// Healthy returns nil while Run is running, the membership is valid and the
// watch of the group is working, else why not.
func (g *Group) Healthy() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.health
}

func (g *Group) setHealth(err error) {
	g.mu.Lock()
	g.health = err
	g.mu.Unlock()
}

// Run joins the group and runs fn for every shard assigned to this member,
// each on its own goroutine, until ctx ends. When a shard moves away its
// context ends, and its claim is given up only after fn has returned. When
// the membership is lost (a renew deadline, a takeover after expiry, an
// edit by hand) every shard stops, and the member joins again.
//
// When ctx ends, Run stops every shard, waits for them, leaves the group
// (its shards move at once) and returns ctx.Err(). It returns early with a
// permanent API error (RBAC), ErrShardCount, or the first error returned by
// fn; a panic in fn stops every shard, leaves, and is then re-raised on
// Run's goroutine. Run returns only when every goroutine it started has
// returned.
func (g *Group) Run(ctx context.Context, fn Func) (err error) {
	if fn == nil {
		return errors.New("shard: Run: fn is nil")
	}
	if !g.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer g.running.Store(false)
	v := newView(g.cfg.Leases, g.cfg.Namespace, g.cfg.Name, g.core.Clock, g.core.Timing.RetryPeriod, g.core.Timing.LeaseDuration)
	vctx, vcancel := context.WithCancel(context.WithoutCancel(ctx))
	viewDone := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { viewDone <- v.run(vctx) })
	m := newMember(g, v, fn, viewDone)
	defer func() {
		m.bg.Wait()
		vcancel()
		wg.Wait()
		g.setHealth(errors.New("shard: not running"))
		g.metrics.gauges(0, 0, false)
		if m.panicked {
			panic(m.panicVal)
		}
	}()
	return m.run(ctx)
}

func (g *Group) event(obj runtime.Object, warning bool, reason, format string, args ...any) {
	if g.cfg.Recorder == nil || obj == nil {
		return
	}
	typ := corev1.EventTypeNormal
	if warning {
		typ = corev1.EventTypeWarning
	}
	g.cfg.Recorder.Eventf(obj, typ, reason, format, args...)
}

func describeShards(s []int) string {
	if len(s) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d (%s)", len(s), ranges(slices.Clone(s)))
}
