package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"syscall"
	"time"

	"github.com/leasehold/leasehold/internal/candidate"
)

// group drives the candidate processes of one Fleet and keeps what their
// events say about each of them. Not safe for concurrent use: one goroutine
// reads the events and asks the questions.
type group struct {
	fleet   *candidate.Fleet
	timeout time.Duration // longest wait for any one condition

	launches   map[string]launch // how each id was started, for restarts
	alive      map[string]bool   // started and not yet seen exiting
	ready      map[string]bool   // said "ready" (its signal handlers are set up)
	leading    map[string]bool   // between "start" and "stop" (or exit)
	startMono  map[string]int64  // Mono of the latest "start"
	starts     map[string]int    // "start" events so far
	reqs       map[string]candidate.Event
	reqCount   map[string]int // "requests" events so far
	expectExit map[string]bool
}

// newGroup returns a group whose candidates re-execute b's binary. Their
// stderr is passed through with -v, else discarded.
func (b *bench) newGroup() *group {
	var stderr io.Writer
	if b.o.verbose {
		stderr = b.stderr
	}
	return &group{
		fleet:    candidate.NewFleet([]string{b.self, candidate.Arg}, nil, stderr),
		timeout:  4*b.o.timing.LeaseDuration + 10*time.Second,
		launches: map[string]launch{}, alive: map[string]bool{}, ready: map[string]bool{},
		leading: map[string]bool{}, startMono: map[string]int64{}, starts: map[string]int{},
		reqs: map[string]candidate.Event{}, reqCount: map[string]int{}, expectExit: map[string]bool{},
	}
}

// launch is how to start a candidate: its flags, and the command when it
// is not this binary (a Python candidate).
type launch struct {
	cmd  *candidate.Command
	args []string
}

// candidate returns how to start a candidate of impl on the Lease name:
// this binary for leasehold and client-go, the Python library's candidate
// process (an Elector) for leasehold-python. Both take the same flags.
func (b *bench) candidate(impl, name string) launch {
	t := b.o.timing
	l := launch{args: []string{"--impl", impl, "--kubeconfig", b.cp.Kubeconfig, "--namespace", namespace, "--lease", name,
		"--lease-duration", t.LeaseDuration.String(), "--renew-deadline", t.RenewDeadline.String(), "--retry-period", t.RetryPeriod.String()}}
	if impl == candidate.PythonImpl {
		l.cmd, l.args[1] = &b.python, "elector"
	}
	return l
}

// ids returns the identities of n candidates of impl.
func ids(impl string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", impl, i+1)
	}
	return out
}

// close stops every candidate (SIGTERM, SIGKILL after a grace period) and
// waits for them.
func (g *group) close() { g.fleet.Close(5 * time.Second) }

// start launches candidate id as l says.
func (g *group) start(id string, l launch) error {
	g.launches[id] = l
	g.alive[id], g.ready[id], g.leading[id], g.expectExit[id] = true, false, false, false
	var err error
	if l.cmd != nil {
		err = g.fleet.StartCommand(*l.cmd, id, l.args...)
	} else {
		err = g.fleet.Start(id, l.args...)
	}
	if err != nil {
		g.alive[id] = false
		return err
	}
	return nil
}

// restart launches id again with the arguments it was first started with; it
// must have exited.
func (g *group) restart(id string) error {
	if g.alive[id] {
		return fmt.Errorf("candidate %s: restart while it is still running", id)
	}
	return g.start(id, g.launches[id])
}

// stop sends sig (SIGTERM or SIGKILL) to id and expects it to exit.
func (g *group) stop(id string, sig syscall.Signal) error {
	g.expectExit[id] = true
	return g.fleet.Signal(id, sig)
}

// apply updates the state from one event. A candidate that fails or exits
// without having been told to is an error.
func (g *group) apply(ev candidate.Event) error {
	switch ev.Ev {
	case "ready":
		g.ready[ev.ID] = true
	case "start":
		g.leading[ev.ID] = true
		g.startMono[ev.ID] = ev.Mono
		g.starts[ev.ID]++
	case "stop":
		g.leading[ev.ID] = false
	case "requests":
		g.reqs[ev.ID] = ev
		g.reqCount[ev.ID]++
	case "exit":
		if ev.Err != "" {
			return fmt.Errorf("candidate %s failed: %s", ev.ID, ev.Err)
		}
	case "exited":
		g.alive[ev.ID], g.ready[ev.ID], g.leading[ev.ID] = false, false, false
		if !g.expectExit[ev.ID] {
			return fmt.Errorf("candidate %s exited unexpectedly (run with -v to see its stderr)", ev.ID)
		}
	}
	return nil
}

// waitUntil applies events until cond holds, ctx ends, a candidate fails, or
// g.timeout passes.
func (g *group) waitUntil(ctx context.Context, what string, cond func() bool) error {
	timer := time.NewTimer(g.timeout)
	defer timer.Stop()
	for !cond() {
		select {
		case ev := <-g.fleet.Events:
			if err := g.apply(ev); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return fmt.Errorf("no %s within %v", what, g.timeout)
		}
	}
	return nil
}

// sleep applies events for d, so that a failing candidate is noticed at once.
func (g *group) sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev := <-g.fleet.Events:
			if err := g.apply(ev); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return nil
		}
	}
}

// leaderOf returns the one candidate among ids that leads, "" if none or
// (transiently, in the order events were read) several do.
func (g *group) leaderOf(ids []string) string {
	leader := ""
	for _, id := range ids {
		if g.leading[id] {
			if leader != "" {
				return ""
			}
			leader = id
		}
	}
	return leader
}

// awaitLeader waits until exactly one of ids leads and returns it.
func (g *group) awaitLeader(ctx context.Context, ids []string) (string, error) {
	var leader string
	err := g.waitUntil(ctx, "leader among "+fmt.Sprint(ids), func() bool {
		leader = g.leaderOf(ids)
		return leader != ""
	})
	return leader, err
}

// awaitSuccessor waits until a candidate of ids other than prev starts
// leading after mono, and returns it.
func (g *group) awaitSuccessor(ctx context.Context, ids []string, prev string, mono int64) (string, error) {
	var next string
	err := g.waitUntil(ctx, "new leader after "+prev, func() bool {
		for _, id := range ids {
			if id != prev && g.leading[id] && g.startMono[id] > mono {
				next = id
				return true
			}
		}
		return false
	})
	return next, err
}

// replace waits until id (told to stop) has exited, restarts it, and waits
// until it is ready and then for settle.
func (g *group) replace(ctx context.Context, id string, settle time.Duration) error {
	if err := g.waitUntil(ctx, id+" exit", func() bool { return !g.alive[id] }); err != nil {
		return err
	}
	if err := g.restart(id); err != nil {
		return err
	}
	if err := g.waitUntil(ctx, id+" ready after restart", func() bool { return g.ready[id] }); err != nil {
		return err
	}
	return g.sleep(ctx, settle)
}

// settle waits until every one of ids is ready (a Python candidate takes
// a second or more to import its client; measured from before that, its
// first hand-over would time its start-up), then applies events for d.
func (g *group) settle(ctx context.Context, ids []string, d time.Duration) error {
	if err := g.waitUntil(ctx, "ready from every candidate", func() bool {
		return !slices.ContainsFunc(ids, func(id string) bool { return !g.ready[id] })
	}); err != nil {
		return err
	}
	return g.sleep(ctx, d)
}

// snapshotRequests sends SIGUSR1 to every id and waits for each to report
// its request counts; it returns those events.
func (g *group) snapshotRequests(ctx context.Context, ids []string) (map[string]candidate.Event, error) {
	before := map[string]int{}
	for _, id := range ids {
		before[id] = g.reqCount[id]
		if err := g.fleet.Signal(id, syscall.SIGUSR1); err != nil {
			return nil, err
		}
	}
	err := g.waitUntil(ctx, "request counts from every candidate", func() bool {
		return !slices.ContainsFunc(ids, func(id string) bool { return g.reqCount[id] == before[id] })
	})
	if err != nil {
		return nil, err
	}
	out := map[string]candidate.Event{}
	for _, id := range ids {
		out[id] = g.reqs[id]
	}
	return out, nil
}
