// Command chaos runs seeded fault schedules against fleets of Leasehold
// electors, client-go electors, a mix of both, and Leasehold lock holders on real etcd and kube-apiserver processes,
// and prints two tables per implementation: the faults injected by kind, and
// what the checker found (overlapping terms, stale writes accepted by the
// fenced resource, tokens going backwards, the longest time without a leader)
// with the seeds of the schedules that broke safety; each reproduces with
// -seed S -schedules 1.
//
//	go run ./internal/chaos/cmd/chaos -schedules 500 -parallel 4
//
// Every schedule runs against every implementation (the same seed gives the
// same faults). -parallel runs that many control planes side by side, each
// taking the next (seed, implementation) pair. -drift gives the Leasehold
// candidates clocks running fast or slow (see Schedule.Skew); a schedule whose
// rates exceed the bound documented in lease/doc.go is counted apart, since
// there overlaps are expected and only the fencing token protects the
// resource. -no-deadline and -no-fencing are control runs: with either, the
// checker must report violations.
//
// Violations are blamed on the process at fault (see chaos.Report.Blame), so
// a mixed fleet shows whose safety broke. The exit status is 1 if a Leasehold
// elector or lock holder broke safety within the tolerated clock rates.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/leasehold/leasehold/internal/candidate"
	"github.com/leasehold/leasehold/internal/chaos"
	"github.com/leasehold/leasehold/internal/testenv"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == candidate.Arg {
		os.Exit(candidate.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type summary struct {
	schedules, terms            int
	overlaps, paused            int
	fenced, writes, stale       int
	unfenceable                 int
	backwards, errs             int
	byLeasehold, byClientGo     int
	maxNoLeader, maxNoLeaderAll time.Duration
	// Seeds of the schedules in which Leasehold members (electors or lock
	// holders) or client-go members broke safety.
	leaseholdSeeds, clientGoSeeds []uint64
}

type item struct {
	seed uint64
	impl string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("schedules", 5, "schedules per implementation")
	impls := fs.String("impl", "leasehold,client-go,mixed,lock", "comma-separated fleets: leasehold, client-go, mixed (electors), lock (Leasehold Mutex holders taking turns)")
	seed := fs.Uint64("seed", 1, "seed of the first schedule; schedule i uses seed+i (the same seeds for every implementation)")
	k := fs.Int("candidates", 3, "candidate processes")
	d := fs.Duration("duration", 20*time.Second, "length of each schedule's faults")
	ld := fs.Duration("lease-duration", 3*time.Second, "LeaseDuration (whole seconds)")
	rd := fs.Duration("renew-deadline", 1500*time.Millisecond, "RenewDeadline (keep LeaseDuration-RenewDeadline >= 1s for client-go, see lease/doc.go)")
	rp := fs.Duration("retry-period", 300*time.Millisecond, "RetryPeriod")
	kinds := fs.String("kinds", "", "comma-separated fault kinds (default all: "+kindList()+")")
	drift := fs.Float64("drift", 0, "clock rates of Leasehold candidates drawn from [1-drift, 1+drift]; the documented bound for the timing is (LD-RD)/(LD+RD)")
	parallel := fs.Int("parallel", 1, "control planes running schedules side by side")
	noDeadline := fs.Bool("no-deadline", false, "control run: Leasehold candidates keep working past their term until they read another holder")
	noFencing := fs.Bool("no-fencing", false, "control run: the resource accepts every write")
	verbose := fs.Bool("v", false, "print each schedule, each fault and each violation")
	printOnly := fs.Bool("print", false, "print the schedules and exit, without running them")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chaos: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var ks []chaos.Kind
	for _, s := range strings.Split(*kinds, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !validKind(chaos.Kind(s)) {
			fmt.Fprintf(stderr, "chaos: unknown fault kind %q (want one of %s)\n", s, kindList())
			return 2
		}
		ks = append(ks, chaos.Kind(s))
	}
	if *drift < 0 || *drift >= 1 {
		fmt.Fprintf(stderr, "chaos: -drift must be in [0, 1), got %v\n", *drift)
		return 2
	}
	if *parallel < 1 || *n < 1 || *k < 2 {
		fmt.Fprintln(stderr, "chaos: -parallel and -schedules must be at least 1, -candidates at least 2")
		return 2
	}
	var order []string
	// Schedules within the documented clock-rate bound, and beyond it.
	sums, beyond := map[string]*summary{}, map[string]*summary{}
	injected := map[string]map[chaos.Kind]int{}
	for _, impl := range strings.Split(*impls, ",") {
		impl = strings.TrimSpace(impl)
		switch impl {
		case "leasehold", "client-go", "mixed", "lock":
		default:
			fmt.Fprintf(stderr, "chaos: unknown implementation %q (want leasehold, client-go, mixed or lock)\n", impl)
			return 2
		}
		order = append(order, impl)
		sums[impl], beyond[impl], injected[impl] = &summary{}, &summary{}, map[chaos.Kind]int{}
	}
	tm := chaos.Timing{LeaseDuration: *ld, RenewDeadline: *rd, RetryPeriod: *rp}
	schedule := func(s uint64) chaos.Schedule {
		return chaos.Generate(s, *k, *d, tm, ks...).Skew(*drift)
	}
	if *printOnly {
		for i := range *n {
			fmt.Fprintf(stdout, "schedule %s\n", schedule(*seed+uint64(i)))
		}
		return 0
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "leasehold-chaos-")
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	items := make(chan item)
	var mu sync.Mutex // guards sums and stderr lines
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stderr, format+"\n", args...)
	}
	began := time.Now()
	lane := func(l int) error {
		cp, err := testenv.StartControlPlane(ctx, testenv.Options{Output: stderr})
		if err != nil {
			return err
		}
		defer func() { _ = cp.Stop() }()
		env := chaos.Env{CP: cp, Argv0: []string{self, candidate.Arg}, Dir: filepath.Join(dir, fmt.Sprint(l)),
			NoDeadline: *noDeadline, NoFencing: *noFencing}
		if *verbose {
			env.Logf = logf
		}
		for it := range items {
			sched := schedule(it.seed)
			res, err := chaos.Run(ctx, env, it.impl, sched)
			if err != nil {
				logf("seed %d %s: %v", it.seed, it.impl, err)
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
			v := res.Violations()
			mu.Lock()
			for kind, c := range res.Injected {
				injected[it.impl][kind] += c
			}
			if res.Tolerated {
				sums[it.impl].add(res)
			} else {
				beyond[it.impl].add(res)
			}
			fmt.Fprintf(stderr, "[%v] seed %d %-9s: %d terms, %d violations, %d paused overlaps, %d fenced writes of %d, clocks x%.2f%s, max without leader after heal %v (whole run %v)\n",
				time.Since(began).Round(time.Second), it.seed, it.impl, res.Terms, len(v), len(res.PausedOverlaps), len(res.Fence.Fenced), res.Fence.Writes,
				res.RateRatio, map[bool]string{true: "", false: " (beyond tolerance)"}[res.Tolerated],
				res.MaxNoLeader.Round(time.Millisecond), res.MaxNoLeaderAll.Round(time.Millisecond))
			if *verbose || len(v) > 0 {
				if *verbose {
					fmt.Fprintf(stderr, "  schedule %s\n", sched)
				}
				lines := append(v, res.Errors...)
				if len(lines) > 6 && !*verbose {
					lines = append(lines[:5:5], fmt.Sprintf("... and %d more (-v prints all)", len(lines)-5))
				}
				for _, line := range lines {
					fmt.Fprintf(stderr, "  %s\n", line)
				}
			}
			mu.Unlock()
		}
		return nil
	}
	var wg sync.WaitGroup
	for l := range *parallel {
		wg.Go(func() {
			if err := lane(l); err != nil { // the other lanes take the work
				logf("lane %d: %v", l, err)
			}
		})
	}
	lanesDone := make(chan struct{})
	go func() { // joined below through lanesDone
		wg.Wait()
		close(lanesDone)
	}()
feed:
	for i := range *n {
		for _, impl := range order {
			select {
			case items <- item{*seed + uint64(i), impl}:
			case <-ctx.Done():
				break feed
			case <-lanesDone:
				fmt.Fprintln(stderr, "chaos: no control plane left to run schedules")
				break feed
			}
		}
	}
	close(items)
	<-lanesDone

	fmt.Fprintf(stdout, "timing: LD %v, RD %v, RP %v (clock-rate bound: fastest/slowest < %.2f; in mixed fleets also RD on the slowest Leasehold clock < LD-1s when RP < 1s, see chaos.Schedule.Tolerated); %d candidates; %v of faults per schedule; seeds %d..%d; clock drift ±%.0f%%; %v in all\n",
		*ld, *rd, *rp, float64(*ld)/float64(*rd), *k, *d, *seed, *seed+uint64(*n)-1, *drift*100, time.Since(began).Round(time.Second))
	if *noDeadline || *noFencing {
		fmt.Fprintf(stdout, "CONTROL RUN: hard deadline disabled %v, fencing disabled %v\n", *noDeadline, *noFencing)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprint(w, "faults injected\tschedules")
	allKinds := append(append([]chaos.Kind{}, chaos.Kinds...), chaos.ClockRate)
	for _, kind := range allKinds {
		fmt.Fprintf(w, "\t%s", kind)
	}
	fmt.Fprintln(w)
	for _, impl := range order {
		fmt.Fprintf(w, "%s\t%d", impl, sums[impl].schedules+beyond[impl].schedules)
		for _, kind := range allKinds {
			fmt.Fprintf(w, "\t%d", injected[impl][kind])
		}
		fmt.Fprintln(w)
	}
	_ = w.Flush()
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "clock rates within the documented bound:")
	table(stdout, order, sums)
	bad := false
	nBeyond := 0
	for _, impl := range order {
		bad = bad || len(sums[impl].leaseholdSeeds) > 0
		nBeyond += beyond[impl].schedules
	}
	if nBeyond > 0 {
		fmt.Fprintln(stdout, "\nclock rates beyond the documented bound (overlaps expected; the fencing token must still keep stale writes at 0):")
		table(stdout, order, beyond)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stdout, "interrupted: the tables cover the schedules that finished")
	}
	if bad && !*noDeadline && !*noFencing {
		return 1
	}
	return 0
}

func (s *summary) add(res *chaos.Result) {
	s.schedules++
	s.terms += res.Terms
	lh, cg := res.Blame["leasehold"]+res.Blame["lock"], res.Blame["client-go"]
	s.byLeasehold += lh
	s.byClientGo += cg
	if lh > 0 {
		s.leaseholdSeeds = append(s.leaseholdSeeds, res.Seed)
	}
	if cg > 0 {
		s.clientGoSeeds = append(s.clientGoSeeds, res.Seed)
	}
	s.overlaps += len(res.Overlaps)
	s.paused += len(res.PausedOverlaps)
	s.writes += res.Fence.Writes
	s.fenced += len(res.Fence.Fenced)
	s.stale += len(res.Fence.Stale)
	s.unfenceable += res.Fence.Unfenceable
	s.backwards += len(res.TokensBackwards)
	s.errs += len(res.Errors)
	s.maxNoLeader = max(s.maxNoLeader, res.MaxNoLeader)
	s.maxNoLeaderAll = max(s.maxNoLeaderAll, res.MaxNoLeaderAll)
}

// table prints one row per fleet.
func table(out io.Writer, order []string, sums map[string]*summary) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "fleet\tschedules\tterms\toverlaps\tpaused-overlaps\twrites\tfenced-writes\tstale-writes\tof-them-unfenceable\ttokens-back\tby-leasehold\tby-client-go\terrors\tmax-no-leader-after-heal\tmax-no-leader-run\tseeds-leasehold-broke\tseeds-client-go-broke")
	for _, impl := range order {
		s := sums[impl]
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%v\t%v\t%s\t%s\n", impl, s.schedules, s.terms,
			s.overlaps, s.paused, s.writes, s.fenced, s.stale, s.unfenceable, s.backwards, s.byLeasehold, s.byClientGo, s.errs,
			s.maxNoLeader.Round(time.Millisecond), s.maxNoLeaderAll.Round(time.Millisecond), seeds(s.leaseholdSeeds), seeds(s.clientGoSeeds))
	}
	_ = w.Flush()
}

func seeds(s []uint64) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Trim(fmt.Sprint(s), "[]")
}

func validKind(k chaos.Kind) bool {
	for _, kk := range chaos.Kinds {
		if kk == k {
			return true
		}
	}
	return false
}

func kindList() string {
	var s []string
	for _, k := range chaos.Kinds {
		s = append(s, string(k))
	}
	return strings.Join(s, ",")
}
