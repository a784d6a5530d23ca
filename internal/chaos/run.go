package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/leasehold/leasehold/internal/candidate"
	"github.com/leasehold/leasehold/internal/testenv"
)

// Env is where schedules run.
type Env struct {
	CP *testenv.ControlPlane
	// Argv0 starts a candidate process (usually this binary re-executed with
	// candidate.Arg), with Environ added to its environment.
	Argv0   []string
	Environ []string
	// Python starts a Python candidate (candidate.PythonCommand); needed by
	// the fleets with Python members.
	Python candidate.Command
	// Stderr receives the candidates' standard error (nil discards it).
	Stderr io.Writer
	// Dir holds the per-candidate kubeconfigs.
	Dir string
	// Logf, if set, receives progress.
	Logf func(format string, args ...any)
	// Control runs, to show that the checker fails when a protection is
	// missing: NoDeadline makes Leasehold electors (Go and Python) keep
	// working after their term's context ends until they read another
	// holder from the Lease; NoFencing makes the resource accept every
	// write.
	NoDeadline, NoFencing bool
}

// Impls are the fleets a schedule can run against: Leasehold electors,
// client-go electors, the two alternating, Leasehold Mutex holders that
// take the lock, hold it a second and release it, over and over, electors
// of the Python library (python/leasehold), and Python, Go Leasehold and
// client-go electors taking turns by slot (mixed-python), and members of a
// shard.Group (shards) whose every shard is checked like a lease of its
// own.
var Impls = []string{"leasehold", "client-go", "mixed", "lock", "python", "mixed-python", "shards"}

// ChaosShards is the number of shards of a shards fleet: members of one
// shard.Group, each shard a term of its own with its own fenced resource.
const ChaosShards = 8

// Python members are Leasehold members: they send their fencing token, run
// on an injectable clock (--clock-rate) and keep the same invariants, so
// the clock-rate bound and the blame treat them like Go Leasehold members.
// Only client-go members have neither token nor clock.

// Result is the outcome of one schedule.
type Result struct {
	Seed uint64
	Impl string
	// Injected counts, by kind, the faults applied and healed as scheduled.
	Injected map[Kind]int
	// Failed lists, by kind, the faults that could not be applied or healed
	// as scheduled (a signal that could not be sent, a process that did not
	// die or could not be restarted, a restart of the control plane that
	// failed), each with its error. They are not counted in Injected.
	Failed map[Kind][]string
	// RateRatio is the fastest over the slowest clock of the Leasehold
	// candidates; Tolerated says whether it is within the documented bound.
	RateRatio float64
	Tolerated bool
	Report
	// Errors are harness problems and candidates that exited with an error
	// or without saying why (a crash).
	Errors []string
	// Leftover lists the processes still running when the fleet was told
	// to stop that did not stop cleanly within the grace period after
	// SIGTERM (they were killed), and any whose exit was never seen.
	Leftover []string
}

// stopGrace is how long the fleet's processes get to stop after SIGTERM
// before they are killed.
const stopGrace = 15 * time.Second

// run is the state of one schedule run.
type run struct {
	env   Env
	sched Schedule
	impl  string
	fleet *candidate.Fleet
	args  []string

	proxies []*Proxy
	kubecfg []string
	store   *Store
	consume sync.WaitGroup // the goroutine recording the fleet's events
	done    chan struct{}  // closed once the fleet has stopped
	stopped bool           // stop has run

	mu       sync.Mutex
	rec      candidate.Recorder
	slot     []string       // slot -> id of its current process
	slotOf   map[string]int // id -> slot
	started  map[string]bool
	exited   map[string]bool
	clean    map[string]bool  // logged its "exit" event
	killed   map[string]bool  // sent SIGKILL by a Kill fault
	stopping bool             // the fleet is being stopped
	leading  map[string]int64 // id -> start of its open term
	pauses   map[string][]Window
	errs     []string
	leftover []string
	gen      []int
}

// Run runs sched against a fleet of impl (one of Impls) candidates on a
// fresh Lease and checks the terms they logged. When the run fails after
// its schedule was known (no first leader, a candidate that could not be
// started, ctx done), Run returns the error together with a Result holding
// what was recorded until then: Seed, Impl, Injected, Failed, the clock
// rates, Errors and Leftover, with an empty Report.
func Run(ctx context.Context, env Env, impl string, sched Schedule) (*Result, error) {
	if env.Logf == nil {
		env.Logf = func(string, ...any) {}
	}
	if !slices.Contains(Impls, impl) {
		return nil, fmt.Errorf("chaos: unknown impl %q (want one of %s)", impl, strings.Join(Impls, ", "))
	}
	if hasPython(impl, sched.Candidates) && len(env.Python.Argv0) == 0 {
		return nil, fmt.Errorf("chaos: fleet %s has Python members but Env.Python is not set (candidate.PythonCommand)", impl)
	}
	res := newResult(impl, sched)
	r, err := newRun(env, impl, sched)
	if err != nil {
		return res, err
	}
	defer r.close()
	live, whole, err := r.drive(ctx, res)
	res.Errors, res.Leftover = r.problems() // the fleet has stopped: no more events
	if err != nil {
		return res, err
	}
	terms := r.rec.Terms(candidate.Mono())
	for _, t := range terms {
		r.env.Logf("seed %d %s: %s (%s) led %+.3fs .. %+.3fs with token %s: %s", sched.Seed, impl, t.ID, t.Impl,
			float64(t.Start-whole.From)/1e9, float64(t.End-whole.From)/1e9, t.Token, t.Cause)
	}
	slack := sched.Timing.RenewDeadline + time.Second
	res.Report = CheckRun(terms, r.store.Writes(), r.pauses, slack, live, whole)
	if impl == "lock" {
		alive := r.aliveAtEnd()
		res.Starved = Starved(terms, alive, live, 2*len(alive))
	}
	return res, nil
}

// aliveAtEnd returns the ids of the processes of the fleet's slots that
// neither exited nor were killed.
func (r *run) aliveAtEnd() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, id := range r.slot {
		if id != "" && r.started[id] && !r.killed[id] && (!r.exited[id] || r.clean[id]) {
			ids = append(ids, id)
		}
	}
	return ids
}

// newResult returns the Result of sched against impl before it runs: the
// skewed clocks counted as injected, and whether their rates are tolerated.
func newResult(impl string, sched Schedule) *Result {
	res := &Result{Seed: sched.Seed, Impl: impl, Injected: map[Kind]int{}, Failed: map[Kind][]string{}}
	var lhSlots []int
	for i := range sched.Candidates {
		if implOf(impl, i) != "client-go" {
			lhSlots = append(lhSlots, i)
			if sched.Rate(i) != 1 {
				res.Injected[ClockRate]++
			}
		}
	}
	res.Tolerated, res.RateRatio = sched.Tolerated(lhSlots)
	return res
}

// count counts f, applied with the outcome err, in Injected or Failed.
func (res *Result) count(f Fault, err error) {
	if err != nil {
		res.Failed[f.Kind] = append(res.Failed[f.Kind], fmt.Sprintf("%s: %v", f, err))
		return
	}
	res.Injected[f.Kind]++
}

// newRun sets up the store, the proxies and the kubeconfigs of a run; close
// releases them.
func newRun(env Env, impl string, sched Schedule) (*run, error) {
	u, err := url.Parse(env.CP.URL)
	if err != nil {
		return nil, err
	}
	tm := sched.Timing
	r := &run{
		env: env, sched: sched, impl: impl,
		fleet: candidate.NewFleet(env.Argv0, env.Environ, env.Stderr),
		args: []string{"--lease", fmt.Sprintf("chaos-%s-%d-%d", impl, sched.Seed, time.Now().UnixNano()%1e6),
			"--lease-duration", tm.LeaseDuration.String(), "--renew-deadline", tm.RenewDeadline.String(), "--retry-period", tm.RetryPeriod.String()},
		done: make(chan struct{}),
		slot: make([]string, sched.Candidates), slotOf: map[string]int{}, started: map[string]bool{}, exited: map[string]bool{},
		clean: map[string]bool{}, killed: map[string]bool{},
		leading: map[string]int64{}, pauses: map[string][]Window{}, gen: make([]int, sched.Candidates),
	}
	if r.store, err = NewStore(!env.NoFencing); err != nil {
		return nil, err
	}
	for i := range sched.Candidates {
		p, err := NewProxy(u.Host)
		if err != nil {
			r.close()
			return nil, err
		}
		r.proxies = append(r.proxies, p)
		kc, err := r.writeKubeconfig(i, p.Addr())
		if err != nil {
			r.close()
			return nil, err
		}
		r.kubecfg = append(r.kubecfg, kc)
	}
	return r, nil
}

func (r *run) close() {
	for _, p := range r.proxies {
		_ = p.Close()
	}
	_ = r.store.Close()
}

// drive starts the fleet, waits for a first leader, applies the faults,
// waits out the quiet tail and stops the fleet, whatever happens. It returns
// the windows liveness is measured over: from the last fault healed, and
// from the first leader, to the end of the tail.
func (r *run) drive(ctx context.Context, res *Result) (live, whole Window, err error) {
	r.consume.Go(r.record)
	defer r.stop()
	for i := range r.sched.Candidates {
		if err := r.start(i); err != nil {
			return live, whole, err
		}
	}
	if err := r.waitLeader(ctx, 30*time.Second); err != nil {
		return live, whole, fmt.Errorf("chaos: no first leader: %w", err)
	}
	r.env.Logf("seed %d %s: first leader", r.sched.Seed, r.impl)
	first := candidate.Mono()
	lastHeal := first
	for _, f := range r.sched.Faults {
		if err := sleep(ctx, f.Gap); err != nil {
			return live, whole, err
		}
		if err := r.inject(ctx, f, res); err != nil {
			return live, whole, err
		}
		lastHeal = candidate.Mono()
	}
	if err := sleep(ctx, r.sched.Tail); err != nil {
		return live, whole, err
	}
	end := candidate.Mono()
	t0 := time.Now()
	r.stop()
	r.env.Logf("seed %d %s: fleet stopped in %v", r.sched.Seed, r.impl, time.Since(t0).Round(time.Millisecond))
	return Window{lastHeal, end}, Window{first, end}, nil
}

// inject applies f and counts it in res (Result.count). It returns an error
// only when ctx is done, which ends the run.
func (r *run) inject(ctx context.Context, f Fault, res *Result) error {
	err := r.apply(ctx, f)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		r.env.Logf("seed %d %s: %s failed: %v", r.sched.Seed, r.impl, f.Kind, err)
	}
	res.count(f, err)
	return nil
}

// stop thaws any frozen process, stops the fleet (SIGTERM, SIGKILL after
// stopGrace) and waits until every event has been recorded. Idempotent; not
// safe for concurrent use.
func (r *run) stop() {
	if r.stopped {
		return
	}
	r.stopped = true
	r.mu.Lock()
	r.stopping = true
	for id, ws := range r.pauses { // never leave a process frozen
		if len(ws) > 0 && ws[len(ws)-1].To == 0 {
			_ = r.fleet.Signal(id, syscall.SIGCONT)
		}
	}
	r.mu.Unlock()
	r.fleet.Close(stopGrace)
	close(r.done)
	r.consume.Wait()
}

// problems returns, once the fleet has stopped, the harness errors and the
// processes that did not stop cleanly (see Result.Errors and Leftover).
func (r *run) problems() (errs, leftover []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	errs = append([]string(nil), r.errs...)
	leftover = append([]string(nil), r.leftover...)
	var never []string
	for id := range r.started {
		if !r.exited[id] {
			never = append(never, id+": its exit was never seen")
		}
	}
	sort.Strings(never)
	return errs, append(leftover, never...)
}

func (r *run) writeKubeconfig(i int, addr string) (string, error) {
	rc := r.env.CP.Config()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["chaos"] = &clientcmdapi.Cluster{Server: "https://" + addr, CertificateAuthorityData: rc.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: rc.BearerToken}
	cfg.Contexts["chaos"] = &clientcmdapi.Context{Cluster: "chaos", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "chaos"
	path := filepath.Join(r.env.Dir, fmt.Sprintf("kubeconfig-%d-%d", r.sched.Seed, i))
	if err := os.MkdirAll(r.env.Dir, 0o700); err != nil {
		return "", err
	}
	return path, clientcmd.WriteToFile(*cfg, path)
}

// implOf returns the implementation of slot i in a fleet of impl:
// leasehold, client-go, lock or python.
func implOf(impl string, i int) string {
	switch impl {
	case "mixed":
		if i%2 == 1 {
			return "client-go"
		}
		return "leasehold"
	case "mixed-python":
		return [...]string{"python", "leasehold", "client-go"}[i%3]
	default:
		return impl
	}
}

// hasPython reports whether a fleet of impl with n slots has Python members.
func hasPython(impl string, n int) bool {
	for i := range n {
		if implOf(impl, i) == "python" {
			return true
		}
	}
	return false
}

// start starts a new process (a new identity) in slot i, behind its proxy.
func (r *run) start(i int) error {
	r.mu.Lock()
	id := fmt.Sprintf("c%d.%d", i, r.gen[i])
	r.gen[i]++
	r.slot[i] = id
	r.slotOf[id] = i
	r.mu.Unlock()
	impl := implOf(r.impl, i)
	flagImpl := impl
	if impl == "python" {
		flagImpl = "elector"
	}
	args := append([]string{"--impl", flagImpl, "--kubeconfig", r.kubecfg[i], "--write-url", r.store.URL()}, r.args...)
	if impl != "client-go" {
		if rate := r.sched.Rate(i); rate != 1 {
			args = append(args, "--clock-rate", fmt.Sprint(rate))
		}
		if r.env.NoDeadline && (impl == "leasehold" || impl == "python") {
			args = append(args, "--unsafe-no-deadline")
		}
	}
	if impl == "shards" {
		args = append(args, "--shards", strconv.Itoa(ChaosShards))
	}
	if impl == "client-go" {
		// client-go releases without waiting for its work to return (see
		// election/interop_test.go).
		args = append(args, "--release-on-cancel=false")
	}
	var err error
	if impl == "python" {
		err = r.fleet.StartCommand(r.env.Python, id, args...)
	} else {
		err = r.fleet.Start(id, args...)
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.started[id] = true
	r.mu.Unlock()
	return nil
}

// record records events until the fleet has stopped (done is closed), then
// drains what is left.
func (r *run) record() {
	for {
		select {
		case ev := <-r.fleet.Events:
			r.add(ev)
		case <-r.done:
			for {
				select {
				case ev := <-r.fleet.Events:
					r.add(ev)
				default:
					return
				}
			}
		}
	}
}

func (r *run) add(ev candidate.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec.Add(ev)
	switch ev.Ev {
	case "start":
		r.leading[ev.ID] = ev.Mono
	case "stop":
		delete(r.leading, ev.ID)
	case "exited":
		delete(r.leading, ev.ID)
		r.exited[ev.ID] = true
		r.judgeExit(ev.ID)
	case "exit":
		r.clean[ev.ID] = true
		if ev.Err != "" {
			r.errs = append(r.errs, fmt.Sprintf("%s exited: %s", ev.ID, ev.Err))
		}
	}
}

// judgeExit judges the end of process id, which logs its "exit" before it
// ends unless it is killed or crashes: killed by a Kill fault is expected;
// gone on its own without a word is an error; not stopped cleanly once the
// fleet was told to stop, it is left over. r.mu is held.
func (r *run) judgeExit(id string) {
	switch {
	case r.clean[id] || r.killed[id]:
	case r.stopping:
		r.leftover = append(r.leftover, fmt.Sprintf("%s did not stop cleanly within %v of SIGTERM", id, stopGrace))
	default:
		r.errs = append(r.errs, fmt.Sprintf("%s exited without logging why (crashed?)", id))
	}
}

// leader returns the slot of the candidate whose open term started last.
func (r *run) leader() (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	best, at := "", int64(0)
	for id, start := range r.leading {
		if best == "" || start > at {
			best, at = id, start
		}
	}
	if best == "" {
		return 0, false
	}
	return r.slotOf[best], true
}

func (r *run) waitLeader(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, ok := r.leader(); ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// apply injects f, waits for its duration and heals it.
func (r *run) apply(ctx context.Context, f Fault) error {
	slot := f.Target
	if f.Leader {
		// Aim at the leader: give a takeover in progress time to finish;
		// without a leader by then, hit Target.
		_ = r.waitLeader(ctx, 2*r.sched.Timing.LeaseDuration)
		if l, ok := r.leader(); ok {
			slot = l
		}
	}
	r.mu.Lock()
	id := r.slot[slot]
	r.mu.Unlock()
	p := r.proxies[slot]
	r.env.Logf("seed %d %s: %s on %s at %d", r.sched.Seed, r.impl, f.Kind, id, candidate.Mono())
	switch f.Kind {
	case ReqLatency, RespLatency:
		if f.Kind == ReqLatency {
			p.SetLatency(f.Delay, 0)
		} else {
			p.SetLatency(0, f.Delay)
		}
		defer p.SetLatency(0, 0)
		return sleep(ctx, f.Dur)
	case Partition:
		p.SetBlackhole(true)
		defer p.SetBlackhole(false)
		return sleep(ctx, f.Dur)
	case Degrade:
		p.SetLatency(0, f.Delay)
		defer p.SetLatency(0, 0)
		if err := sleep(ctx, f.Dur); err != nil {
			return err
		}
		p.SetBlackhole(true)
		defer p.SetBlackhole(false)
		return sleep(ctx, f.Then)
	case Reset:
		p.ResetAll()
		return nil
	case Pause:
		r.mu.Lock()
		r.pauses[id] = append(r.pauses[id], Window{From: candidate.Mono()})
		r.mu.Unlock()
		if err := r.fleet.Signal(id, syscall.SIGSTOP); err != nil {
			r.mu.Lock()
			r.pauses[id] = r.pauses[id][:len(r.pauses[id])-1] // it never froze
			r.mu.Unlock()
			return err
		}
		err := sleep(ctx, f.Dur)
		cerr := r.fleet.Signal(id, syscall.SIGCONT)
		r.mu.Lock()
		ws := r.pauses[id]
		ws[len(ws)-1].To = candidate.Mono()
		r.mu.Unlock()
		return errors.Join(err, cerr)
	case Kill:
		r.mu.Lock()
		r.killed[id] = true
		r.mu.Unlock()
		if err := r.fleet.Signal(id, syscall.SIGKILL); err != nil {
			return err
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			r.mu.Lock()
			gone := r.exited[id]
			r.mu.Unlock()
			if gone {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not exit after SIGKILL", id)
			}
			if err := sleep(ctx, 10*time.Millisecond); err != nil {
				return err
			}
		}
		if err := sleep(ctx, f.Dur); err != nil {
			return err
		}
		return r.start(slot)
	case APIRestart:
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		return r.env.CP.RestartAPIServer(rctx)
	case EtcdRestart:
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		return r.env.CP.RestartEtcd(rctx)
	}
	return fmt.Errorf("unknown fault kind %q", f.Kind)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
