// Command demo is Leasehold's guided tour: on a local control plane (etcd +
// kube-apiserver, started here) three replica processes campaign for one
// Lease; the demo shows who leads, kills the leader, shows the failover,
// performs a planned handoff and a graceful shutdown, and prints the measured
// times.
//
//	go run ./hack/demo      (or: make demo)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/internal/candidate"
	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/lease"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == candidate.Arg {
		os.Exit(candidate.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	ld := flag.Duration("lease-duration", 5*time.Second, "LeaseDuration of the replicas (whole seconds)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *ld); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	fleet *candidate.Fleet
	args  []string
	ld    time.Duration
}

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func run(ctx context.Context, ld time.Duration) error {
	t0 := time.Now()
	say("Leasehold demo: leader election on a Kubernetes Lease, watch-driven and fenced.")
	say("Starting a local control plane (etcd + kube-apiserver; the first run builds them, several minutes)...")
	cp, err := testenv.StartControlPlane(ctx, testenv.Options{Output: os.Stderr})
	if err != nil {
		return err
	}
	defer cp.Stop()
	say("Control plane ready at %s after %v.", cp.URL, time.Since(t0).Round(time.Millisecond))
	cs, err := cp.Clientset()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	rd, rp := (ld * 2 / 3).Round(time.Millisecond), ld/5
	d := &demo{
		fleet: candidate.NewFleet([]string{self, candidate.Arg}, nil, os.Stderr),
		args: []string{"--kubeconfig", cp.Kubeconfig, "--lease", "demo", "--lease-duration", ld.String(),
			"--renew-deadline", rd.String(), "--retry-period", rp.String()},
		ld: ld,
	}
	defer d.fleet.Close(5 * time.Second)

	say("")
	say("Three replica processes campaign for Lease default/demo (LeaseDuration %v, RenewDeadline %v, RetryPeriod %v).", ld, rd, rp)
	for _, id := range []string{"replica-1", "replica-2", "replica-3"} {
		if err := d.fleet.Start(id, d.args...); err != nil {
			return err
		}
	}
	first, err := d.nextStart(ctx)
	if err != nil {
		return err
	}
	say("  %s leads with fencing token %s; the other two watch the Lease and make no requests.", first.ID, first.Token)

	say("")
	say("1. Crash: %s is killed (SIGKILL); it never releases the Lease.", first.ID)
	killed := candidate.Mono()
	if err := d.fleet.Signal(first.ID, syscall.SIGKILL); err != nil {
		return err
	}
	second, err := d.nextStart(ctx)
	if err != nil {
		return err
	}
	failover := time.Duration(second.Mono - killed)
	say("  %s took over %v later: a crashed holder is waited out for the lease duration (%v),", second.ID, failover.Round(time.Millisecond), ld)
	say("  counted from when the followers last saw it renewed. New fencing token %s > %s.", second.Token, first.Token)
	if err := d.fleet.Start(first.ID, d.args...); err != nil {
		return err
	}
	say("  %s restarts and follows.", first.ID)

	target := "replica-3"
	if second.ID == target {
		target = "replica-2"
	}
	say("")
	say("2. Planned handoff to %s: the Lease's preferred holder is set (spec.preferredHolder, plus an annotation", target)
	say("   for clusters whose apiserver drops that field).")
	c, err := lease.NewClient(cs.CoordinationV1(), "default", "demo")
	if err != nil {
		return err
	}
	asked := candidate.Mono()
	if _, err := election.RequestHandoff(ctx, c, target); err != nil {
		return err
	}
	third, err := d.nextStart(ctx)
	if err != nil {
		return err
	}
	handoff := time.Duration(third.Mono - asked)
	say("  %s leads %v after the request: %s stopped its work, released, and the target took over at once.", third.ID, handoff.Round(time.Millisecond), second.ID)

	say("")
	say("3. Graceful shutdown: %s gets SIGTERM; its work returns, then it releases the Lease.", third.ID)
	termed := candidate.Mono()
	if err := d.fleet.Signal(third.ID, syscall.SIGTERM); err != nil {
		return err
	}
	fourth, err := d.nextStart(ctx)
	if err != nil {
		return err
	}
	graceful := time.Duration(fourth.Mono - termed)
	say("  %s leads %v later, woken by the release on its watch (no polling).", fourth.ID, graceful.Round(time.Millisecond))

	if err := show(ctx, cs); err != nil {
		return err
	}
	say("")
	say("Measured: crash failover %v (lease duration %v), planned handoff %v, graceful handoff %v.",
		failover.Round(time.Millisecond), ld, handoff.Round(time.Millisecond), graceful.Round(time.Millisecond))
	say("client-go's polling followers need up to RetryPeriod×1.2 (%v with these settings) to notice a release.", time.Duration(float64(rp)*1.2).Round(time.Millisecond))
	say("Done in %v.", time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// nextStart returns the next "start" event of any replica.
func (d *demo) nextStart(ctx context.Context) (candidate.Event, error) {
	timeout := time.After(4 * d.ld)
	for {
		select {
		case ev := <-d.fleet.Events:
			if ev.Ev == "start" {
				return ev, nil
			}
			if ev.Ev == "exit" && ev.Err != "" {
				return ev, fmt.Errorf("%s failed: %s", ev.ID, ev.Err)
			}
		case <-ctx.Done():
			return candidate.Event{}, ctx.Err()
		case <-timeout:
			return candidate.Event{}, errors.New("no replica became leader in time")
		}
	}
}

func show(ctx context.Context, cs kubernetes.Interface) error {
	l, err := cs.CoordinationV1().Leases("default").Get(ctx, "demo", metav1.GetOptions{})
	if err != nil {
		return err
	}
	rec := lease.FromSpec(l.Spec)
	say("")
	say("The Lease now (kubectl get lease demo -o yaml shows the same): holder %s, leaseTransitions %d, leaseDurationSeconds %d.",
		rec.Holder, rec.Transitions, int(rec.LeaseDuration/time.Second))
	return nil
}
