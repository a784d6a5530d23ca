package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/lease"
)

// demoCmd is `leasehold demo`: the guided tour.
type demoCmd struct {
	*app
	leaseDuration time.Duration
}

func newDemoCmd(a *app) *cobra.Command {
	d := &demoCmd{app: a}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Tour: three `leasehold run` replicas, a crash, a handoff, with timings",
		Long: `demo starts three "leasehold run" replicas of a small workload on one Lease, shows
who leads, kills the leader (SIGKILL), shows the failover, performs a planned
handoff and a graceful shutdown, and prints the measured times.

Unless --kubeconfig names a cluster (KUBECONFIG alone is not used, so that a
demo never lands on a cluster by accident), it starts a local control plane
(etcd + kube-apiserver built from the Go module proxy; this needs the Leasehold
source tree, and the first build takes several minutes).`,
		Example: `  leasehold demo
  leasehold demo --kubeconfig ~/.kube/config -n scratch --lease-duration 10s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return d.run(cmd.Context()) },
	}
	cmd.Flags().DurationVar(&d.leaseDuration, "lease-duration", 5*time.Second, "LeaseDuration of the replicas (whole seconds)")
	return cmd
}

func (d *demoCmd) say(format string, args ...any) { fmt.Fprintf(d.io.Out, format+"\n", args...) }

func (d *demoCmd) run(ctx context.Context) error {
	t0 := time.Now()
	d.say("Leasehold demo: leader election on a Kubernetes Lease, watch-driven and fenced.")
	kubeconfig := ""
	if d.flags.KubeConfig != nil {
		kubeconfig = *d.flags.KubeConfig
	}
	ns := "default"
	if kubeconfig == "" {
		d.say("Starting a local control plane (etcd + kube-apiserver; the first run builds them, several minutes)...")
		cp, err := testenv.StartControlPlane(ctx, testenv.Options{Output: d.io.Err})
		if err != nil {
			return err
		}
		defer cp.Stop()
		kubeconfig = cp.Kubeconfig
		d.say("Control plane ready at %s after %v.", cp.URL, time.Since(t0).Round(time.Millisecond))
	} else {
		var err error
		if ns, err = d.namespace(); err != nil {
			return err
		}
	}
	*d.flags.KubeConfig = kubeconfig
	cs, err := d.clientset()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ld := d.leaseDuration
	rd, rp := (ld * 2 / 3).Round(time.Millisecond), ld/5
	name := fmt.Sprintf("leasehold-demo-%d", time.Now().Unix()%100000)
	reps := &replicas{self: self, args: []string{"--kubeconfig", kubeconfig, "-n", ns, "run", "--lease", name,
		"--lease-duration", ld.String(), "--renew-deadline", rd.String(), "--retry-period", rp.String(), "--grace", "2s"},
		starts: make(chan start, 16), procs: map[string]*exec.Cmd{}}
	defer reps.close()

	d.say("")
	d.say("Three replicas run `leasehold run --lease %s -- <workload>` (LeaseDuration %v, RenewDeadline %v, RetryPeriod %v).", name, ld, rd, rp)
	d.say("The workload runs only while its replica leads; it gets LEASEHOLD_TOKEN in its environment.")
	for _, id := range []string{"replica-1", "replica-2", "replica-3"} {
		if err := reps.start(id); err != nil {
			return err
		}
	}
	wait := func() (start, error) { return reps.next(ctx, 4*ld+10*time.Second) }
	first, err := wait()
	if err != nil {
		return err
	}
	d.say("  %s leads; its workload started with token %s. The others watch the Lease and make no requests.", first.id, first.token)

	d.say("")
	d.say("1. Crash: %s is killed (SIGKILL); it never releases the Lease.", first.id)
	killed := time.Now()
	reps.signal(first.id, syscall.SIGKILL)
	second, err := wait()
	if err != nil {
		return err
	}
	failover := second.at.Sub(killed)
	d.say("  %s's workload started %v later: a crashed leader is waited out for the lease duration (%v),", second.id, failover.Round(time.Millisecond), ld)
	d.say("  counted from when the followers last saw it renewed. New fencing token %s > %s.", second.token, first.token)
	if err := reps.start(first.id); err != nil {
		return err
	}
	d.say("  %s restarts and follows.", first.id)

	target := "replica-3"
	if second.id == target {
		target = "replica-2"
	}
	d.say("")
	d.say("2. Planned handoff to %s (what `leasehold handoff %s --to %s` does).", target, name, target)
	c, err := lease.NewClient(cs.CoordinationV1(), ns, name)
	if err != nil {
		return err
	}
	asked := time.Now()
	if _, err := election.RequestHandoff(ctx, c, target); err != nil {
		return err
	}
	third, err := wait()
	if err != nil {
		return err
	}
	handoff := third.at.Sub(asked)
	d.say("  %s's workload started %v after the request: %s stopped its workload, released, and the target took over.", third.id, handoff.Round(time.Millisecond), second.id)

	d.say("")
	d.say("3. Graceful shutdown: %s gets SIGTERM; it stops its workload, then releases the Lease.", third.id)
	termed := time.Now()
	reps.signal(third.id, syscall.SIGTERM)
	fourth, err := wait()
	if err != nil {
		return err
	}
	graceful := fourth.at.Sub(termed)
	d.say("  %s's workload started %v later, woken by the release on its watch (no polling).", fourth.id, graceful.Round(time.Millisecond))

	if err := d.show(ctx, cs, ns, name); err != nil {
		return err
	}
	d.say("")
	d.say("Measured: crash failover %v (lease duration %v), planned handoff %v, graceful handoff %v.",
		failover.Round(time.Millisecond), ld, handoff.Round(time.Millisecond), graceful.Round(time.Millisecond))
	d.say("client-go's polling followers need up to RetryPeriod×1.2 (%v here) to notice a release.", time.Duration(float64(rp)*1.2).Round(time.Millisecond))
	d.say("Done in %v.", time.Since(t0).Round(100*time.Millisecond))
	return nil
}

func (d *demoCmd) show(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	l, err := cs.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	s := lease.NewSnapshot(l)
	d.say("")
	d.say("The Lease now (`leasehold get %s -o wide`, or kubectl): holder %s, token %v, leaseTransitions %d.", name, s.Record.Holder, s.Token, s.Record.Transitions)
	return nil
}

// start is a workload reporting that it began, with its replica's token.
type start struct {
	id, token string
	at        time.Time
}

// replicas are the `leasehold run` processes of the demo.
type replicas struct {
	self   string
	args   []string
	starts chan start

	mu    sync.Mutex
	procs map[string]*exec.Cmd
	wg    sync.WaitGroup
}

// workload prints one line when it starts and runs until SIGTERM.
const workload = `echo "STARTED $LEASEHOLD_TOKEN"; trap 'exit 0' TERM; while :; do sleep 0.1; done`

func (r *replicas) start(id string) error {
	args := append(append([]string{}, r.args...), "--identity", id, "--", "sh", "-c", workload)
	cmd := exec.Command(r.self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	r.mu.Lock()
	r.procs[id] = cmd
	r.mu.Unlock()
	r.wg.Go(func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if tok, ok := strings.CutPrefix(sc.Text(), "STARTED "); ok {
				r.starts <- start{id: id, token: tok, at: time.Now()}
			}
		}
		_ = cmd.Wait()
	})
	return nil
}

// signal sends sig to a replica's leasehold process (not its workload).
func (r *replicas) signal(id string, sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cmd := r.procs[id]; cmd != nil {
		// A killed leasehold takes its workload down with it (the workload
		// is started with a parent-death signal).
		_ = cmd.Process.Signal(sig)
	}
}

func (r *replicas) next(ctx context.Context, timeout time.Duration) (start, error) {
	select {
	case s := <-r.starts:
		return s, nil
	case <-ctx.Done():
		return start{}, ctx.Err()
	case <-time.After(timeout):
		return start{}, errors.New("no replica started its workload in time")
	}
}

// close stops every replica (SIGTERM, then SIGKILL) and waits for them.
func (r *replicas) close() {
	r.mu.Lock()
	for _, cmd := range r.procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	procs := r.procs
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { // joined below
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		for _, cmd := range procs {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		<-done
	}
}
