// Command chaos runs seeded fault schedules against fleets of Leasehold
// electors, client-go electors, a mix of both, Leasehold lock holders,
// electors of the Python library, and a mix of Python, Go Leasehold and
// client-go electors, on real etcd and kube-apiserver processes, and prints
// tables: the faults
// injected by kind (and those that failed to apply), and per fleet what the
// checker found (overlapping terms, stale writes accepted by the fenced
// resource, tokens going backwards, the longest time without a leader) with
// the seeds of the schedules that broke safety, and the runs that cannot
// vouch for anything (failed, with harness errors, with processes left
// over, with writes outside every term, or with no term or no accepted
// write), their seeds listed below the table. Each schedule reproduces with
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
// checker must report violations by the Leasehold members of every fleet the
// switched-off protection applies to (-no-deadline: Leasehold electors, in
// the leasehold and mixed fleets; -no-fencing: every Leasehold member).
//
// Violations are blamed on the process at fault (see chaos.Report.Blame), so
// a mixed fleet shows whose safety broke. Python members are Leasehold
// members: they send their token and run on an injectable clock, so the
// clock-rate bound and the verdict treat them like Go Leasehold members
// (by-python counts what is blamed on them). They run as /usr/bin/python3
// -m leasehold.candidate from the python/ directory of the repository at or
// above the working directory.
//
// Exit status: 0 when every schedule ran, applied all its faults and passed;
// 2 on bad flags; 1 otherwise, with the reasons printed last: a Leasehold
// elector or lock holder (Go or Python) broke safety within the tolerated
// clock rates
// (outside control runs); a run failed (for instance no first leader); a
// run had harness errors (a candidate exited with an error or crashed), a
// process left over (not stopped cleanly after SIGTERM), writes outside
// every term, or no term or no accepted write; a fault failed to apply; a
// schedule did not run (interrupted, or no control plane left); or a
// control run found no violation in a fleet it applies to.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
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

type item struct {
	seed uint64
	impl string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("schedules", 5, "schedules per implementation")
	impls := fs.String("impl", "leasehold,client-go,mixed,lock", "comma-separated fleets: leasehold, client-go, mixed (electors), lock (Leasehold Mutex holders taking turns), python (Python library electors), mixed-python (Python, Leasehold and client-go electors), shards (members of a shard group, each shard checked as a lease of its own)")
	seed := fs.Uint64("seed", 1, "seed of the first schedule; schedule i uses seed+i (the same seeds for every implementation)")
	k := fs.Int("candidates", 3, "candidate processes")
	d := fs.Duration("duration", 20*time.Second, "length of each schedule's faults")
	ld := fs.Duration("lease-duration", 3*time.Second, "LeaseDuration (whole seconds)")
	rd := fs.Duration("renew-deadline", 1500*time.Millisecond, "RenewDeadline (keep LeaseDuration-RenewDeadline >= 1s for client-go, see lease/doc.go)")
	rp := fs.Duration("retry-period", 300*time.Millisecond, "RetryPeriod")
	kinds := fs.String("kinds", "", "comma-separated fault kinds (default all: "+kindList()+")")
	drift := fs.Float64("drift", 0, "clock rates of Leasehold candidates drawn from [1-drift, 1+drift]; the documented bound for the timing is (LD-RD)/(LD+RD)")
	parallel := fs.Int("parallel", 1, "control planes running schedules side by side")
	noDeadline := fs.Bool("no-deadline", false, "control run: Leasehold electors (Go and Python) keep working past their term until they read another holder")
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
	for _, impl := range strings.Split(*impls, ",") {
		impl = strings.TrimSpace(impl)
		if !slices.Contains(chaos.Impls, impl) {
			fmt.Fprintf(stderr, "chaos: unknown implementation %q (want some of %s)\n", impl, strings.Join(chaos.Impls, ", "))
			return 2
		}
		order = append(order, impl)
	}
	if *noDeadline || *noFencing {
		applies := false
		for _, impl := range order {
			applies = applies || controlApplies(impl, *noDeadline, *noFencing)
		}
		if !applies {
			fmt.Fprintln(stderr, "chaos: a control run needs a fleet the switched-off protection applies to (-no-deadline: leasehold, mixed, python or mixed-python; -no-fencing: those or lock)")
			return 2
		}
	}
	t := newTally(order, *n, *noDeadline, *noFencing)
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
	var python candidate.Command
	if slices.Contains(order, "python") || slices.Contains(order, "mixed-python") {
		if python, err = candidate.PythonCommand("."); err != nil {
			fmt.Fprintf(stderr, "chaos: %v\n", err)
			return 1
		}
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
	var mu sync.Mutex // guards t and stderr lines
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
		env := chaos.Env{CP: cp, Argv0: []string{self, candidate.Arg}, Python: python, Dir: filepath.Join(dir, fmt.Sprint(l)),
			NoDeadline: *noDeadline, NoFencing: *noFencing}
		if *verbose {
			env.Logf = logf
		}
		for it := range items {
			sched := schedule(it.seed)
			res, err := chaos.Run(ctx, env, it.impl, sched)
			if err != nil && ctx.Err() != nil {
				logf("seed %d %s: %v", it.seed, it.impl, err)
				return nil // interrupted: the schedule did not run
			}
			if res == nil {
				res = &chaos.Result{Seed: it.seed, Impl: it.impl, Tolerated: true}
			}
			mu.Lock()
			t.add(outcome{res, err})
			progress(stderr, outcome{res, err}, sched, time.Since(began), *verbose)
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
	t.print(stdout)
	if ctx.Err() != nil {
		fmt.Fprintln(stdout, "interrupted: the tables cover the schedules that finished")
	}
	return t.printVerdict(stdout)
}

// progress prints one line about a finished schedule, followed by its
// violations and problems (all of them, and the schedule, with verbose).
func progress(w io.Writer, o outcome, sched chaos.Schedule, elapsed time.Duration, verbose bool) {
	res := o.res
	v := res.Violations()
	if o.err != nil {
		fmt.Fprintf(w, "[%v] seed %d %-12s: FAILED: %v\n", elapsed.Round(time.Second), res.Seed, res.Impl, o.err)
	} else {
		fmt.Fprintf(w, "[%v] seed %d %-12s: %d terms, %d violations, %d paused overlaps, %d fenced writes of %d, clocks x%.2f%s, max without leader after heal %v (whole run %v)\n",
			elapsed.Round(time.Second), res.Seed, res.Impl, res.Terms, len(v), len(res.PausedOverlaps), len(res.Fence.Fenced), res.Fence.Writes,
			res.RateRatio, map[bool]string{true: "", false: " (beyond tolerance)"}[res.Tolerated],
			res.MaxNoLeader.Round(time.Millisecond), res.MaxNoLeaderAll.Round(time.Millisecond))
	}
	if verbose {
		fmt.Fprintf(w, "  schedule %s\n", sched)
	}
	lines := append(append([]string(nil), v...), res.Errors...)
	for _, kind := range allKinds() {
		for _, e := range res.Failed[kind] {
			lines = append(lines, "fault failed: "+e)
		}
	}
	for _, l := range res.Leftover {
		lines = append(lines, "left over: "+l)
	}
	if o.err == nil && res.Fence.Orphans > 0 {
		lines = append(lines, fmt.Sprintf("%d writes outside every term of their writer", res.Fence.Orphans))
	}
	if o.err == nil && (res.Terms == 0 || res.Fence.Accepted == 0) {
		lines = append(lines, fmt.Sprintf("nothing to check: %d terms, %d writes accepted", res.Terms, res.Fence.Accepted))
	}
	if len(lines) > 6 && !verbose {
		lines = append(lines[:5:5], fmt.Sprintf("... and %d more (-v prints all)", len(lines)-5))
	}
	for _, line := range lines {
		fmt.Fprintf(w, "  %s\n", line)
	}
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
