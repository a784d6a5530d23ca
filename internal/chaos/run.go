package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
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
	// Stderr receives the candidates' standard error (nil discards it).
	Stderr io.Writer
	// Dir holds the per-candidate kubeconfigs.
	Dir string
	// Logf, if set, receives progress.
	Logf func(format string, args ...any)
	// Control runs, to show that the checker fails when a protection is
	// missing: NoDeadline makes Leasehold electors keep working after
	// their term's context ends until they read another holder from the
	// Lease; NoFencing makes the resource accept every write.
	NoDeadline, NoFencing bool
}

// Impls are the fleets a schedule can run against: Leasehold electors,
// client-go electors, the two alternating, or Leasehold Mutex holders that
// take the lock, hold it a second and release it, over and over.
var Impls = []string{"leasehold", "client-go", "mixed", "lock"}

// Result is the outcome of one schedule.
type Result struct {
	Seed     uint64
	Impl     string
	Injected map[Kind]int
	// RateRatio is the fastest over the slowest clock of the Leasehold
	// candidates; Tolerated says whether it is within the documented bound.
	RateRatio float64
	Tolerated bool
	Report
	// Errors are harness problems and candidates that exited with an error.
	Errors []string
}

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

	mu      sync.Mutex
	rec     candidate.Recorder
	slot    []string       // slot -> id of its current process
	slotOf  map[string]int // id -> slot
	exited  map[string]bool
	leading map[string]int64 // id -> start of its open term
	pauses  map[string][]Window
	errs    []string
	gen     []int
}

// Run runs sched against a fleet of impl (one of Impls) candidates on a fresh Lease and checks the terms they logged.
func Run(ctx context.Context, env Env, impl string, sched Schedule) (*Result, error) {
	if env.Logf == nil {
		env.Logf = func(string, ...any) {}
	}
	switch impl {
	case "leasehold", "client-go", "mixed", "lock":
	default:
		return nil, fmt.Errorf("chaos: unknown impl %q", impl)
	}
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
		slot: make([]string, sched.Candidates), slotOf: map[string]int{}, exited: map[string]bool{},
		leading: map[string]int64{}, pauses: map[string][]Window{}, gen: make([]int, sched.Candidates),
	}
	if r.store, err = NewStore(!env.NoFencing); err != nil {
		return nil, err
	}
	defer func() {
		for _, p := range r.proxies {
			_ = p.Close()
		}
		_ = r.store.Close()
	}()
	for i := range sched.Candidates {
		p, err := NewProxy(u.Host)
		if err != nil {
			return nil, err
		}
		r.proxies = append(r.proxies, p)
		kc, err := r.writeKubeconfig(i, p.Addr())
		if err != nil {
			return nil, err
		}
		r.kubecfg = append(r.kubecfg, kc)
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { r.consume(done) })
	closed := false
	shutdown := func() {
		if closed {
			return
		}
		closed = true
		r.mu.Lock()
		for id, ws := range r.pauses { // never leave a process frozen
			if len(ws) > 0 && ws[len(ws)-1].To == 0 {
				_ = r.fleet.Signal(id, syscall.SIGCONT)
			}
		}
		r.mu.Unlock()
		r.fleet.Close(15 * time.Second)
		close(done)
		wg.Wait()
	}
	defer shutdown()

	for i := range sched.Candidates {
		if err := r.start(i); err != nil {
			return nil, err
		}
	}
	res := &Result{Seed: sched.Seed, Impl: impl, Injected: map[Kind]int{}}
	var lhSlots []int
	for i := range sched.Candidates {
		if r.implOf(i) != "client-go" {
			lhSlots = append(lhSlots, i)
			if sched.Rate(i) != 1 {
				res.Injected[ClockRate]++
			}
		}
	}
	res.Tolerated, res.RateRatio = sched.Tolerated(lhSlots)
	if err := r.waitLeader(ctx, 30*time.Second); err != nil {
		return nil, fmt.Errorf("chaos: no first leader: %w", err)
	}
	r.env.Logf("seed %d %s: first leader", sched.Seed, impl)
	lastHeal := candidate.Mono()
	first := lastHeal
	for _, f := range sched.Faults {
		if err := sleep(ctx, f.Gap); err != nil {
			return nil, err
		}
		if err := r.apply(ctx, f); err != nil {
			r.errorf("%s: %v", f, err)
		}
		res.Injected[f.Kind]++
		lastHeal = candidate.Mono()
	}
	if err := sleep(ctx, sched.Tail); err != nil {
		return nil, err
	}
	end := candidate.Mono()
	t0 := time.Now()
	shutdown()
	r.env.Logf("seed %d %s: fleet stopped in %v", sched.Seed, impl, time.Since(t0).Round(time.Millisecond))

	terms := r.rec.Terms(candidate.Mono())
	for _, t := range terms {
		r.env.Logf("seed %d %s: %s (%s) led %+.3fs .. %+.3fs with token %s: %s", sched.Seed, impl, t.ID, t.Impl,
			float64(t.Start-first)/1e9, float64(t.End-first)/1e9, t.Token, t.Cause)
	}
	slack := tm.RenewDeadline + time.Second
	res.Report = CheckRun(terms, r.store.Writes(), r.pauses, slack, Window{lastHeal, end}, Window{first, end})
	res.Errors = r.errs
	return res, nil
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

func (r *run) implOf(i int) string {
	switch r.impl {
	case "mixed":
		if i%2 == 1 {
			return "client-go"
		}
		return "leasehold"
	default:
		return r.impl
	}
}

// start starts a new process (a new identity) in slot i, behind its proxy.
func (r *run) start(i int) error {
	r.mu.Lock()
	id := fmt.Sprintf("c%d.%d", i, r.gen[i])
	r.gen[i]++
	r.slot[i] = id
	r.slotOf[id] = i
	r.mu.Unlock()
	impl := r.implOf(i)
	args := append([]string{"--impl", impl, "--kubeconfig", r.kubecfg[i], "--write-url", r.store.URL()}, r.args...)
	if impl != "client-go" {
		if rate := r.sched.Rate(i); rate != 1 {
			args = append(args, "--clock-rate", fmt.Sprint(rate))
		}
		if r.env.NoDeadline && impl == "leasehold" {
			args = append(args, "--unsafe-no-deadline")
		}
	}
	if impl == "client-go" {
		// client-go releases without waiting for its work to return (see
		// election/interop_test.go).
		args = append(args, "--release-on-cancel=false")
	}
	return r.fleet.Start(id, args...)
}

// consume records events until done is closed, then drains what is left.
func (r *run) consume(done <-chan struct{}) {
	for {
		select {
		case ev := <-r.fleet.Events:
			r.add(ev)
		case <-done:
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
	case "exit":
		if ev.Err != "" {
			r.errs = append(r.errs, fmt.Sprintf("%s exited: %s", ev.ID, ev.Err))
		}
	}
}

func (r *run) errorf(format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
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
