package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/internal/candidate"
	"github.com/leasehold/leasehold/internal/testenv"
)

// namespace holds every Lease the benchmarks use.
const namespace = "default"

// bench is one run of the benchmarks on one control plane.
type bench struct {
	o      options
	cp     *testenv.ControlPlane
	cs     kubernetes.Interface
	self   string            // this binary, re-executed as candidate processes
	python candidate.Command // starts Python candidates (leasehold-python)
	stderr io.Writer
	start  time.Time
}

// logf writes a progress line to stderr, stamped with the time since start.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "[%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// run starts a control plane, runs the selected benchmarks and writes their
// results to stdout, one JSON object per line, at the end. A failed benchmark
// is reported and the others still run, unless ctx has ended.
func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	b := &bench{o: o, stderr: stderr, start: time.Now()}
	b.logf("starting a control plane (etcd + kube-apiserver; the first run builds them, several minutes)")
	cp, err := testenv.StartControlPlane(ctx, testenv.Options{Output: stderr})
	if err != nil {
		return fmt.Errorf("start the control plane: %w", err)
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			b.logf("stopping the control plane: %v", err)
		}
	}()
	b.cp = cp
	if b.cs, err = cp.Clientset(); err != nil {
		return fmt.Errorf("clientset: %w", err)
	}
	if b.self, err = os.Executable(); err != nil {
		return fmt.Errorf("find this binary to run candidates: %w", err)
	}
	if slices.Contains(o.impls, candidate.PythonImpl) {
		if b.python, err = candidate.PythonCommand("."); err != nil {
			return fmt.Errorf("%w (or leave it out: -impl leasehold,client-go)", err)
		}
	}
	b.logf("control plane ready at %s; timings LeaseDuration %v, RenewDeadline %v, RetryPeriod %v",
		cp.URL, o.timing.LeaseDuration, o.timing.RenewDeadline, o.timing.RetryPeriod)

	var (
		results []any
		errs    []error
	)
	for _, name := range o.benches {
		if ctx.Err() != nil {
			break
		}
		res, err := b.runBench(ctx, name)
		results = append(results, res...)
		if err != nil && ctx.Err() == nil {
			b.logf("%s FAILED: %v", name, err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if ctx.Err() != nil {
		b.logf("interrupted; results so far follow")
		errs = append(errs, fmt.Errorf("interrupted: %w", context.Cause(ctx)))
	} else {
		b.logf("done")
	}
	for _, r := range results {
		line, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode result: %w", err)
		}
		if _, err := stdout.Write(append(line, '\n')); err != nil {
			return fmt.Errorf("write result: %w", err)
		}
	}
	return errors.Join(errs...)
}

// runBench runs one benchmark for every selected implementation it applies
// to and returns the results it got, also when some failed.
func (b *bench) runBench(ctx context.Context, name string) ([]any, error) {
	var (
		results []any
		errs    []error
	)
	perImpl := func(fn func(context.Context, string) (any, error)) {
		for _, impl := range b.o.impls {
			if ctx.Err() != nil {
				return
			}
			r, err := fn(ctx, impl)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", impl, err))
				continue
			}
			results = append(results, r)
		}
	}
	switch name {
	case "handoff":
		perImpl(b.handoff)
	case "failover":
		perImpl(b.failover)
	case "load":
		rs, err := b.load(ctx)
		results, errs = append(results, rs...), append(errs, err)
	case "shards":
		for _, c := range b.o.shards {
			if ctx.Err() != nil {
				break
			}
			r, err := b.shards(ctx, c.impl, c.k, c.n)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s K=%d N=%d: %w", c.impl, c.k, c.n, err))
				continue
			}
			results = append(results, r)
		}
	case "lease-write":
		r, err := b.leaseWrite(ctx, writeOnly)
		if err != nil {
			return nil, err
		}
		return []any{r}, nil
	case "handover-floor":
		var results []any
		for _, m := range []floorMode{cycleWrite, cycleMix} {
			r, err := b.leaseWrite(ctx, m)
			if err != nil {
				return results, err
			}
			results = append(results, r)
		}
		return results, nil
	case "lock-uncontended", "lock-handover":
		if !slices.Contains(b.o.impls, "leasehold") {
			b.logf("%s: skipped, it measures leasehold only and -impl excludes it", name)
			return nil, nil
		}
		if name == "lock-uncontended" {
			r, err := b.lockUncontended(ctx)
			if err != nil {
				return nil, err
			}
			return []any{r}, nil
		}
		for _, w := range b.o.waiters {
			if ctx.Err() != nil {
				break
			}
			r, err := b.lockHandover(ctx, w)
			if err != nil {
				errs = append(errs, fmt.Errorf("%d waiters: %w", w, err))
				continue
			}
			results = append(results, r)
		}
	default:
		return nil, fmt.Errorf("unknown benchmark %q", name)
	}
	return results, errors.Join(errs...)
}
