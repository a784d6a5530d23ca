// Command bench measures Leasehold (the Go library, and the Python library
// in python/, impl "leasehold-python") against client-go's leaderelection
// on a local control plane (etcd + kube-apiserver, started here), in one
// run, with the same timings for all:
//
//   - handoff: SIGTERM the leader of three candidate processes; time until
//     another leads.
//   - failover: SIGKILL the leader; time until another leads, and the excess
//     over the earliest moment the lease could be taken (last change of the
//     dead leader's record seen by this process's own watch + LeaseDuration).
//   - load: API requests per second of a steady leader and its followers.
//   - shards: K shards over N members (package shard) against a
//     Knative-style baseline (one client-go elector per shard, in this
//     process): balance, shards moved and time to serve on a join and a
//     leave, time to serve after a crash beyond LeaseDuration, and API
//     writes and reads per second in steady state (-shard-configs).
//   - lease-write: one Lease written again and again with nothing else
//     running: the write's latency, the delay to its watch event, and the
//     CPU kube-apiserver and etcd spend per write (the floor under a lock
//     hand-over, which is one such write and its event).
//   - handover-floor: that write every -lock-hold, each with one Lease
//     created and one deleted beside it (the queue entries of a hand-over
//     cycle): the least a lock-handover cycle costs, and its latency; then
//     again with lock-handover's lists and watches replayed beside it.
//   - lock-uncontended, lock-handover (Leasehold only, in this process): a
//     free Mutex's Lock+Release latency; release-to-next-holder latency with
//     2, 10, 50 waiters (-lock-waiters), with API requests, conflicts and overtakes per hand-over, the API request rate,
//     and the CPU kube-apiserver, etcd and this process used per hand-over.
//
// Progress goes to stderr. The output ends with one JSON object per (bench,
// impl) per line on stdout:
//
//	go run ./bench [flags]      (or: make bench)
//	go run ./bench -lease-duration 3s -renew-deadline 2s -retry-period 500ms -n 10 -failovers 2 -load-window 10s
//
// Candidate processes re-execute this binary with the argument "candidate";
// Python candidates run /usr/bin/python3 -m leasehold.candidate from the
// python/ directory of the repository at or above the working directory
// (leave them out with -impl leasehold,client-go where Debian's
// python3-kubernetes is missing).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/leasehold/leasehold/internal/candidate"
	"github.com/leasehold/leasehold/internal/holder"
)

// Benchmark and implementation names, in the order they run.
var (
	allBenches = []string{"handoff", "failover", "load", "lease-write", "handover-floor", "lock-uncontended", "lock-handover", "shards"}
	allImpls   = []string{"leasehold", "client-go", candidate.PythonImpl}
)

// options are the parsed flags.
type options struct {
	timing     holder.Timing
	impls      []string
	benches    []string
	n          int
	failovers  int
	loadWindow time.Duration
	lockN      int
	writeN     int
	handovers  int
	waiters    []int
	hold       time.Duration
	verbose    bool
	shards     []shardConfig
	cpuProfile string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == candidate.Arg {
		os.Exit(candidate.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile, err := startCPUProfile(o.cpuProfile)
	if err == nil {
		err = run(ctx, o, os.Stdout, os.Stderr)
		err = errors.Join(err, stopProfile())
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var impls, benches, waiters string
	fs.DurationVar(&o.timing.LeaseDuration, "lease-duration", 15*time.Second, "LeaseDuration of every candidate and lock (whole seconds)")
	fs.DurationVar(&o.timing.RenewDeadline, "renew-deadline", 10*time.Second, "RenewDeadline")
	fs.DurationVar(&o.timing.RetryPeriod, "retry-period", 2*time.Second, "RetryPeriod")
	fs.StringVar(&impls, "impl", strings.Join(allImpls, ","), "comma-separated implementations for the election benchmarks: "+strings.Join(allImpls, ", "))
	fs.StringVar(&benches, "bench", strings.Join(allBenches, ","), "comma-separated benchmarks: "+strings.Join(allBenches, ", "))
	fs.IntVar(&o.n, "n", 20, "handoff: number of hand-overs per implementation")
	fs.IntVar(&o.failovers, "failovers", 3, "failover: number of leader kills per implementation (each costs about a LeaseDuration)")
	fs.DurationVar(&o.loadWindow, "load-window", 30*time.Second, "load: measuring window")
	fs.IntVar(&o.writeN, "write-n", 300, "lease-write: number of writes measured")
	fs.IntVar(&o.lockN, "lock-n", 50, "lock-uncontended: number of Lock+Release cycles")
	fs.IntVar(&o.handovers, "lock-handovers", 50, "lock-handover: hand-overs measured per waiter count")
	fs.StringVar(&waiters, "lock-waiters", "2,10,50", "lock-handover: comma-separated waiter counts, one result each")
	fs.DurationVar(&o.hold, "lock-hold", 5*time.Millisecond, "lock-handover: how long each holder keeps the lock; handover-floor: the pause between an event and the next write")
	shardConfigs := fs.String("shard-configs", defaultShardConfigs, "shards: comma-separated impl:K:N runs (impl leasehold or knative: one client-go elector per shard, as Knative's buckets)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the bench process (the members of the shards benchmark run in it) to this file")
	fs.BoolVar(&o.verbose, "v", false, "pass the candidate processes' stderr (client-go's klog) through")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var errs []error
	var err error
	if o.impls, err = pickList(impls, allImpls, "-impl"); err != nil {
		errs = append(errs, err)
	}
	if o.benches, err = pickList(benches, allBenches, "-bench"); err != nil {
		errs = append(errs, err)
	}
	if o.shards, err = parseShardConfigs(*shardConfigs); err != nil {
		errs = append(errs, err)
	}
	if err := o.timing.Validate(); err != nil {
		errs = append(errs, err)
	}
	if slices.Contains(o.impls, "client-go") && float64(o.timing.RenewDeadline) <= 1.2*float64(o.timing.RetryPeriod) {
		errs = append(errs, fmt.Errorf("-renew-deadline %v must exceed 1.2 × -retry-period %v for client-go", o.timing.RenewDeadline, o.timing.RetryPeriod))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"-n", o.n}, {"-failovers", o.failovers}, {"-lock-n", o.lockN}, {"-write-n", o.writeN}, {"-lock-handovers", o.handovers}} {
		if f.v < 1 {
			errs = append(errs, fmt.Errorf("%s %d must be at least 1", f.name, f.v))
		}
	}
	if o.loadWindow <= 0 {
		errs = append(errs, fmt.Errorf("-load-window %v must be positive", o.loadWindow))
	}
	if o.hold < 0 {
		errs = append(errs, fmt.Errorf("-lock-hold %v must not be negative", o.hold))
	}
	for _, s := range strings.Split(waiters, ",") {
		w, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || w < 1 {
			errs = append(errs, fmt.Errorf("-lock-waiters: %q is not a positive number", s))
			continue
		}
		o.waiters = append(o.waiters, w)
	}
	return o, errors.Join(errs...)
}

// pickList parses a comma-separated subset of known, keeping known's order.
func pickList(s string, known []string, flagName string) ([]string, error) {
	var picked []string
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if !slices.Contains(known, item) {
			return nil, fmt.Errorf("%s: unknown %q (want some of %s)", flagName, item, strings.Join(known, ", "))
		}
		picked = append(picked, item)
	}
	if len(picked) == 0 {
		return nil, fmt.Errorf("%s: empty (want some of %s)", flagName, strings.Join(known, ", "))
	}
	var ordered []string
	for _, k := range known {
		if slices.Contains(picked, k) {
			ordered = append(ordered, k)
		}
	}
	return ordered, nil
}

// startCPUProfile profiles the process into path ("" does nothing) until
// the returned function is called.
func startCPUProfile(path string) (func() error, error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}
