// Command chaos runs seeded fault schedules against fleets of Leasehold,
// client-go or mixed candidates on a real etcd and kube-apiserver, and prints
// a summary per implementation: schedules run, faults injected by kind,
// overlapping terms, stale writes, tokens going backwards and the longest
// time without a leader after the last fault healed; then the seeds of the
// schedules with violations, which reproduce with -seed.
//
//	go run ./internal/chaos/cmd/chaos -schedules 20 -impl leasehold,client-go,mixed -seed 1
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
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
	injected                    map[chaos.Kind]int
	overlaps, paused, fenced    int
	stale, backwards, errs      int
	maxNoLeader, maxNoLeaderAll time.Duration
	violating                   []uint64
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("schedules", 5, "schedules per implementation")
	impls := fs.String("impl", "leasehold,client-go,mixed", "comma-separated implementations: leasehold, client-go, mixed")
	seed := fs.Uint64("seed", 1, "seed of the first schedule; schedule i uses seed+i (the same seeds for every implementation)")
	k := fs.Int("candidates", 3, "candidate processes")
	d := fs.Duration("duration", 20*time.Second, "length of each schedule's faults")
	ld := fs.Duration("lease-duration", 3*time.Second, "LeaseDuration (whole seconds)")
	rd := fs.Duration("renew-deadline", 1500*time.Millisecond, "RenewDeadline (keep LeaseDuration-RenewDeadline >= 1s for client-go, see lease/doc.go)")
	rp := fs.Duration("retry-period", 300*time.Millisecond, "RetryPeriod")
	kinds := fs.String("kinds", "", "comma-separated fault kinds (default all: "+kindList()+")")
	verbose := fs.Bool("v", false, "print each schedule, each fault and each violation")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var ks []chaos.Kind
	for _, s := range strings.Split(*kinds, ",") {
		if s = strings.TrimSpace(s); s != "" {
			ks = append(ks, chaos.Kind(s))
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cp, err := testenv.StartControlPlane(ctx, testenv.Options{Output: stderr})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer func() { _ = cp.Stop() }()
	dir, err := os.MkdirTemp("", "leasehold-chaos-")
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	env := chaos.Env{CP: cp, Argv0: []string{self, candidate.Arg}, Dir: dir}
	if *verbose {
		env.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	}
	tm := chaos.Timing{LeaseDuration: *ld, RenewDeadline: *rd, RetryPeriod: *rp}

	var order []string
	sums := map[string]*summary{}
	for _, impl := range strings.Split(*impls, ",") {
		impl = strings.TrimSpace(impl)
		order = append(order, impl)
		sums[impl] = &summary{injected: map[chaos.Kind]int{}}
	}
	for i := range *n {
		s := *seed + uint64(i)
		sched := chaos.Generate(s, *k, *d, tm, ks...)
		if *verbose {
			fmt.Fprintf(stderr, "schedule %s\n", sched)
		}
		for _, impl := range order {
			res, err := chaos.Run(ctx, env, impl, sched)
			if err != nil {
				fmt.Fprintf(stderr, "seed %d %s: %v\n", s, impl, err)
				if ctx.Err() != nil {
					break
				}
				continue
			}
			sum := sums[impl]
			sum.schedules++
			sum.terms += res.Terms
			for kind, c := range res.Injected {
				sum.injected[kind] += c
			}
			sum.overlaps += len(res.Overlaps)
			sum.paused += len(res.PausedOverlaps)
			sum.fenced += len(res.Fence.Fenced)
			sum.stale += len(res.Fence.Stale)
			sum.backwards += len(res.TokensBackwards)
			sum.errs += len(res.Errors)
			sum.maxNoLeader = max(sum.maxNoLeader, res.MaxNoLeader)
			sum.maxNoLeaderAll = max(sum.maxNoLeaderAll, res.MaxNoLeaderAll)
			v := res.Violations()
			if len(v) > 0 {
				sum.violating = append(sum.violating, s)
			}
			fmt.Fprintf(stderr, "seed %d %-9s: %d terms, %d violations, %d paused overlaps, max without leader after heal %v (whole run %v)\n",
				s, impl, res.Terms, len(v), len(res.PausedOverlaps), res.MaxNoLeader.Round(time.Millisecond), res.MaxNoLeaderAll.Round(time.Millisecond))
			if *verbose {
				for _, line := range append(v, res.Errors...) {
					fmt.Fprintf(stderr, "  %s\n", line)
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
	}

	fmt.Fprintf(stdout, "timing: LD %v, RD %v, RP %v; %d candidates; %v of faults per schedule; seeds %d..%d\n",
		*ld, *rd, *rp, *k, *d, *seed, *seed+uint64(*n)-1)
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprint(w, "impl\tschedules\tterms")
	for _, kind := range chaos.Kinds {
		fmt.Fprintf(w, "\t%s", kind)
	}
	fmt.Fprintln(w, "\toverlaps\tpaused-overlaps\tfenced-late\tstale-writes\ttokens-back\terrors\tmax-no-leader-after-heal\tmax-no-leader-run\tviolating-seeds")
	bad := false
	for _, impl := range order {
		s := sums[impl]
		fmt.Fprintf(w, "%s\t%d\t%d", impl, s.schedules, s.terms)
		for _, kind := range chaos.Kinds {
			fmt.Fprintf(w, "\t%d", s.injected[kind])
		}
		seeds := "-"
		if len(s.violating) > 0 {
			bad = true
			seeds = strings.Trim(fmt.Sprint(s.violating), "[]")
		}
		fmt.Fprintf(w, "\t%d\t%d\t%d\t%d\t%d\t%d\t%v\t%v\t%s\n", s.overlaps, s.paused, s.fenced, s.stale, s.backwards, s.errs,
			s.maxNoLeader.Round(time.Millisecond), s.maxNoLeaderAll.Round(time.Millisecond), seeds)
	}
	_ = w.Flush()
	if bad {
		return 1
	}
	return 0
}

func kindList() string {
	var s []string
	for _, k := range chaos.Kinds {
		s = append(s, string(k))
	}
	return strings.Join(s, ",")
}
