package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/lease"
)

// demoLease is the name of the Lease the tour's replicas share, in the
// tour's own namespace.
const demoLease = "demo"

// demoCleanupTimeout bounds the deletion of the tour's Lease and namespace,
// which also runs after an interrupt.
const demoCleanupTimeout = 30 * time.Second

// demoCmd is `leasehold demo`: the guided tour.
type demoCmd struct {
	*app
	leaseDuration time.Duration
}

func newDemoCmd(a *app) *cobra.Command {
	d := &demoCmd{app: a}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Tour: three `leasehold run` replicas, a crash, a handoff, timings",
		Long: `demo starts three "leasehold run" replicas of a small workload on one Lease,
shows who leads, kills the leader (SIGKILL), shows the failover, performs a
planned handoff and a graceful shutdown, and prints the measured times.

It runs against the cluster your kubeconfig names, found as kubectl finds it
(--kubeconfig, KUBECONFIG, ~/.kube/config, --context, or the pod's service
account), and refuses to start when none is configured. It works in a
namespace of its own, created for the tour (leasehold-demo-xxxxx; -n is not
used), and deletes that namespace and its Lease at the end, also when the tour
fails or is interrupted. It needs the right to create and delete namespaces
and Leases. The replicas are this same program, run as "leasehold run" with
your kubeconfig flags.

From a Leasehold source tree, "make demo" starts a local control plane (etcd
and kube-apiserver) and runs the tour on it.`,
		Example: `  leasehold demo --context kind-scratch
  KUBECONFIG=/tmp/kubeconfig leasehold demo --lease-duration 10s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return d.run(cmd.Context(), kubeFlagArgs(cmd.Root().PersistentFlags()))
		},
	}
	cmd.Flags().DurationVar(&d.leaseDuration, "lease-duration", 5*time.Second, "LeaseDuration of the replicas (whole seconds)")
	return cmd
}

func (d *demoCmd) say(format string, args ...any) { fmt.Fprintf(d.io.Out, format+"\n", args...) }

// run runs the tour. kubeFlags are the kubeconfig flags this process was
// given, for the replicas.
func (d *demoCmd) run(ctx context.Context, kubeFlags []string) (err error) {
	t0 := time.Now()
	cfg, err := d.restConfig()
	if err != nil {
		return fmt.Errorf("%w\n(from a Leasehold source tree, `make demo` starts a local control plane and runs the tour on it)", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	d.say("Leasehold demo: leader election on a Kubernetes Lease, watch-driven and fenced.")
	ns, err := d.createNamespace(ctx, cs)
	if err != nil {
		return err
	}
	d.say("Cluster %s; the tour runs in namespace %s, deleted at the end.", cfg.Host, ns)
	defer func() { err = errors.Join(err, d.cleanup(ctx, cs, ns)) }()

	ld := d.leaseDuration
	rd, rp := (ld * 2 / 3).Round(time.Millisecond), ld/5
	args := append(kubeFlags, "-n", ns, "run", "--lease", demoLease,
		"--lease-duration", ld.String(), "--renew-deadline", rd.String(), "--retry-period", rp.String(), "--grace", "2s")
	reps := newReplicas(self, args)
	defer reps.close() // before cleanup: no replica may write the Lease again

	d.say("")
	d.say("Three replicas run `leasehold run --lease %s -- <workload>` (LeaseDuration %v, RenewDeadline %v, RetryPeriod %v).", demoLease, ld, rd, rp)
	d.say("The workload runs only while its replica leads; it gets LEASEHOLD_TOKEN in its environment.")
	m, err := d.tour(ctx, cs, ns, reps)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("demo interrupted: %w", ctx.Err())
	}
	if err != nil {
		return err
	}
	d.say("")
	d.say("Measured: crash failover %v (lease duration %v), planned handoff %v, graceful handoff %v.",
		m.failover.Round(time.Millisecond), ld, m.handoff.Round(time.Millisecond), m.graceful.Round(time.Millisecond))
	d.say("client-go's polling followers need up to RetryPeriod×1.2 (%v here) to notice a release.", time.Duration(float64(rp)*1.2).Round(time.Millisecond))
	d.say("Done in %v.", time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// createNamespace creates the tour's namespace, with a generated name.
func (d *demoCmd) createNamespace(ctx context.Context, cs kubernetes.Interface) (string, error) {
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "leasehold-demo-",
		Labels:       map[string]string{"app.kubernetes.io/created-by": "leasehold-demo"},
	}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create a namespace for the tour: %w", err)
	}
	return ns.Name, nil
}

// cleanup deletes the tour's Lease and namespace, even after ctx has ended
// (an interrupt). The Lease is deleted first and on its own: a cluster
// without a namespace controller never empties a deleted namespace.
func (d *demoCmd) cleanup(ctx context.Context, cs kubernetes.Interface, ns string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), demoCleanupTimeout)
	defer cancel()
	err := cs.CoordinationV1().Leases(ns).Delete(ctx, demoLease, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		err = nil
	}
	if err == nil {
		err = cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("clean up: %w (delete it with `kubectl delete namespace %s`)", err, ns)
	}
	d.say("Deleted Lease %s/%s and namespace %s.", ns, demoLease, ns)
	return nil
}

// measured are the tour's timings.
type measured struct{ failover, handoff, graceful time.Duration }

// tour starts the replicas and walks through a crash, a planned handoff and
// a graceful shutdown, narrating as it goes.
func (d *demoCmd) tour(ctx context.Context, cs kubernetes.Interface, ns string, reps *replicas) (measured, error) {
	var m measured
	ld := d.leaseDuration
	for _, id := range []string{"replica-1", "replica-2", "replica-3"} {
		if err := reps.start(id); err != nil {
			return m, err
		}
	}
	wait := func() (start, error) { return reps.next(ctx, 4*ld+10*time.Second) }
	first, err := wait()
	if err != nil {
		return m, err
	}
	d.say("  %s leads; its workload started with token %s. The others watch the Lease and make no requests.", first.id, first.token)

	d.say("")
	d.say("1. Crash: %s is killed (SIGKILL); it never releases the Lease.", first.id)
	killed := time.Now()
	reps.signal(first.id, syscall.SIGKILL)
	second, err := wait()
	if err != nil {
		return m, err
	}
	m.failover = second.at.Sub(killed)
	d.say("  %s's workload started %v later: a crashed leader is waited out for the lease duration (%v),", second.id, m.failover.Round(time.Millisecond), ld)
	d.say("  counted from when the followers last saw it renewed. New fencing token %s > %s.", second.token, first.token)
	if err := reps.start(first.id); err != nil {
		return m, err
	}
	d.say("  %s restarts and follows.", first.id)

	target := "replica-3"
	if second.id == target {
		target = "replica-2"
	}
	d.say("")
	d.say("2. Planned handoff to %s (what `leasehold handoff %s --to %s -n %s` does).", target, demoLease, target, ns)
	c, err := lease.NewClient(cs.CoordinationV1(), ns, demoLease)
	if err != nil {
		return m, err
	}
	asked := time.Now()
	if _, err := election.RequestHandoff(ctx, c, target); err != nil {
		return m, err
	}
	third, err := wait()
	if err != nil {
		return m, err
	}
	m.handoff = third.at.Sub(asked)
	d.say("  %s's workload started %v after the request: %s stopped its workload, released, and the target took over.", third.id, m.handoff.Round(time.Millisecond), second.id)

	d.say("")
	d.say("3. Graceful shutdown: %s gets SIGTERM; it stops its workload, then releases the Lease.", third.id)
	termed := time.Now()
	reps.signal(third.id, syscall.SIGTERM)
	fourth, err := wait()
	if err != nil {
		return m, err
	}
	m.graceful = fourth.at.Sub(termed)
	d.say("  %s's workload started %v later, woken by the release on its watch (no polling).", fourth.id, m.graceful.Round(time.Millisecond))
	return m, d.show(ctx, cs, ns)
}

func (d *demoCmd) show(ctx context.Context, cs kubernetes.Interface, ns string) error {
	l, err := cs.CoordinationV1().Leases(ns).Get(ctx, demoLease, metav1.GetOptions{})
	if err != nil {
		return err
	}
	s := lease.NewSnapshot(l)
	d.say("")
	d.say("The Lease now (`leasehold get %s -n %s -o wide`, or kubectl): holder %s, token %v, leaseTransitions %d.", demoLease, ns, s.Record.Holder, s.Token, s.Record.Transitions)
	return nil
}

// kubeFlagArgs returns the kubeconfig flags set on the command line, except
// the namespace, as arguments that give another leasehold process the same
// cluster and credentials. The environment (KUBECONFIG, a pod's service
// account) is inherited.
func kubeFlagArgs(flags *pflag.FlagSet) []string {
	var args []string
	flags.VisitAll(func(f *pflag.Flag) {
		if !f.Changed || f.Name == "namespace" {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				args = append(args, "--"+f.Name+"="+v)
			}
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	return args
}
