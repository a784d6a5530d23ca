//go:build e2e

package e2e

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// slowLease gives deploy/base's leasehold a lease duration of two minutes,
// longer than any wait below: a follower that starts leading within one
// of those waits took over on the kubelet's evidence (or a release), never
// because the lease expired.
const slowLease = `patches:
  - target:
      kind: Deployment
      name: worker
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/args/1
        value: --lease-duration=120s
`

// leaderContainer returns the leading pod and the host PID of its
// container's main process (leasehold).
func (f *fleet) leaderContainer(ctx context.Context, t testing.TB, container string) (string, int) {
	t.Helper()
	leader := f.steadyLeader(ctx, t)
	p, err := f.cs.CoreV1().Pods(f.ns).Get(ctx, leader, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == container {
			id = st.ContainerID
		}
	}
	pid, err := ContainerPID(ctx, f.c, id)
	if err != nil {
		t.Fatal(err)
	}
	return leader, pid
}

// noStartWithin checks that no work starts within d after mono.
func (f *fleet) noStartWithin(ctx context.Context, t *testing.T, mono int64, d time.Duration, why string) {
	t.Helper()
	if e, err := f.rec.FirstStartAfter(ctx, mono, d); err == nil {
		t.Fatalf("%s started leading %s after %s, with no evidence from the kubelet", e.Pod, ms(time.Duration(e.Mono-mono)), why)
	}
}

// TestPodAwareContainerKill: SIGKILL of the leading container. The kubelet
// reports it terminated, and a follower takes over long before the
// two-minute lease duration.
func TestPodAwareContainerKill(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	f := leaseholdFleet(t, c, "e2e-pa-kill", "base", slowLease)
	old, pid := f.leaderContainer(ctx, t, "worker")
	t0 := Mono()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	next, err := f.rec.FirstStartAfter(ctx, t0, time.Minute)
	if err != nil {
		t.Fatalf("no takeover within a minute of killing %s's container (lease duration 2m): %v", old, err)
	}
	t.Logf("container-kill, pod-aware: %s leads %s after %s's container was killed", next.Pod, ms(time.Duration(next.Mono-t0)), old)
}

// TestPodAwareKubeletStopped: the kubelet is stopped (SIGSTOP), then the
// leading container is killed. Nobody reports it, so nobody takes over
// early; once the kubelet runs again and reports it, a follower does.
func TestPodAwareKubeletStopped(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	f := leaseholdFleet(t, c, "e2e-pa-kubelet", "base", slowLease)
	old, pid := f.leaderContainer(ctx, t, "worker")
	if err := c.SignalNode("kubelet", syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = c.SignalNode("kubelet", syscall.SIGCONT)
		}
	}()
	t0 := Mono()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	f.noStartWithin(ctx, t, t0, 20*time.Second, "the kubelet stopped and "+old+"'s container was killed")
	if err := c.SignalNode("kubelet", syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	t1 := Mono()
	next, err := f.rec.FirstStartAfter(ctx, t1, time.Minute)
	if err != nil {
		t.Fatalf("no takeover within a minute of the kubelet resuming: %v", err)
	}
	t.Logf("kubelet stopped: no takeover for 20s; %s leads %s after the kubelet resumed", next.Pod, ms(time.Duration(next.Mono-t1)))
}

// TestPodAwareForceDelete: the leader is frozen (it can neither release
// nor renew), then its Pod is force-deleted: the object goes away without
// the kubelet confirming that the container stopped, so nobody takes over
// before the lease expires.
func TestPodAwareForceDelete(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	f := leaseholdFleet(t, c, "e2e-pa-force", "base", slowLease)
	old, pid := f.leaderContainer(ctx, t, "worker")
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t0 := Mono()
	if err := Kubectl(ctx, c, "-n", f.ns, "delete", "pod", old, "--grace-period=0", "--force", "--wait=false"); err != nil {
		t.Fatal(err)
	}
	f.noStartWithin(ctx, t, t0, 20*time.Second, old+"'s pod was force-deleted")
}

// TestRolloutMovesLeadershipOnce: a rolling restart of three replicas: the
// leader hands over to a pod of the new revision, so leadership moves once.
func TestRolloutMovesLeadershipOnce(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	f := leaseholdFleet(t, c, "e2e-pa-rollout", "base", "")
	transitions, leaderless := f.rollout(ctx, t, true)
	t.Logf("rollout: %d leadership transitions, %s without a leader", transitions, ms(leaderless))
	if transitions != 1 {
		t.Errorf("%d leadership transitions in a rollout, want 1", transitions)
	}
}

// TestSidecarFollowsItsApp: in deploy/sidecar the leader's app container is
// killed; its sidecar (--follow-container app) resigns while the app is not
// ready, and another pod's sidecar leads.
func TestSidecarFollowsItsApp(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	f := leaseholdFleet(t, c, "e2e-pa-sidecar", "sidecar", "")
	f.waitPods(ctx, t)
	var leader string
	if err := Eventually(ctx, 2*time.Minute, func() (bool, string) {
		leader = Holder(ctx, f.cs, f.ns, f.lease)
		return leader != "", "no holder"
	}); err != nil {
		t.Fatal(err)
	}
	p, err := f.cs.CoreV1().Pods(f.ns).Get(ctx, leader, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == "app" {
			id = st.ContainerID
		}
	}
	pid, err := ContainerPID(ctx, c, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := Eventually(ctx, time.Minute, func() (bool, string) {
		h := Holder(ctx, f.cs, f.ns, f.lease)
		return h != "" && h != leader, "holder " + h
	}); err != nil {
		t.Fatalf("the sidecar of %s kept the lease after its app died: %v", leader, err)
	}
}

// TestPodAwareKubeletKilled: the kubelet is killed (SIGKILL), then the
// leading container is killed. The Pod's status still says the container
// runs: stale, so nobody takes over early. Once a new kubelet runs and
// reports the container terminated, a follower does.
func TestPodAwareKubeletKilled(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	f := leaseholdFleet(t, c, "e2e-pa-kubelet-kill", "base", slowLease)
	old, pid := f.leaderContainer(ctx, t, "worker")
	if err := c.KillNode("kubelet"); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = c.RestartNode("kubelet")
		}
	}()
	t0 := Mono()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	f.noStartWithin(ctx, t, t0, 20*time.Second, "the kubelet was killed and "+old+"'s container was killed")
	if err := c.RestartNode("kubelet"); err != nil {
		t.Fatal(err)
	}
	restarted = true
	t1 := Mono()
	next, err := f.rec.FirstStartAfter(ctx, t1, time.Minute)
	if err != nil {
		t.Fatalf("no takeover within a minute of the kubelet's restart: %v", err)
	}
	t.Logf("kubelet killed: no takeover for 20s; %s leads %s after the kubelet restarted", next.Pod, ms(time.Duration(next.Mono-t1)))
}

// TestPodAwareOOMKill: the kernel's OOM killer kills the leading
// container's main process; the kubelet reports it OOMKilled, and a
// follower takes over long before the two-minute lease duration.
func TestPodAwareOOMKill(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	f := leaseholdFleet(t, c, "e2e-pa-oom", "base", slowLease)
	old, pid := f.leaderContainer(ctx, t, "worker")
	t0 := Mono()
	if err := OOMKill(ctx, pid); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob("/dev/shm/leasehold-oom-*"); len(left) > 0 {
		t.Errorf("the OOM kill left files on the host: %v", left)
	}
	next, err := f.rec.FirstStartAfter(ctx, t0, time.Minute)
	if err != nil {
		t.Fatalf("no takeover within a minute of %s's container being OOM-killed (lease duration 2m): %v", old, err)
	}
	var reason string
	if err := Eventually(ctx, time.Minute, func() (bool, string) {
		p, err := f.cs.CoreV1().Pods(f.ns).Get(ctx, old, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, st := range p.Status.ContainerStatuses {
			if st.Name == "worker" && st.LastTerminationState.Terminated != nil {
				reason = st.LastTerminationState.Terminated.Reason
				return true, ""
			}
		}
		return false, "the kubelet has not reported the container's termination"
	}); err != nil {
		t.Fatal(err)
	}
	if reason != "OOMKilled" {
		t.Fatalf("the kubelet reports %s's container terminated with reason %q, want OOMKilled", old, reason)
	}
	t.Logf("OOM kill, pod-aware: %s leads %s after the cap; the kubelet says %s", next.Pod, ms(time.Duration(next.Mono-t0)), reason)
}

// TestPodAwarePartitionedHolder: the leader's pod loses its link to the
// apiserver (iptables in its network namespace) but keeps running, and its
// kubelet keeps reporting it running. Nobody takes over before the lease
// expires: not within LeaseDuration − RetryPeriod of the cut (15s − 2s, as
// deploy/base runs), and the old leader's work stops before the new one's
// starts.
func TestPodAwarePartitionedHolder(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	f := leaseholdFleet(t, c, "e2e-pa-partition", "base", "")
	old, pid := f.leaderContainer(ctx, t, "worker")
	addrs, err := APIServerAddresses(ctx, c, f.cs)
	if err != nil {
		t.Fatal(err)
	}
	t0 := Mono()
	heal, err := Partition(ctx, pid, addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := heal(); err != nil {
			t.Error(err)
		}
	}()
	next, err := f.rec.FirstStartAfter(ctx, t0, time.Minute, old)
	if err != nil {
		t.Fatalf("no takeover within a minute of cutting %s off: %v", old, err)
	}
	after := time.Duration(next.Mono - t0)
	if min := 13 * time.Second; after < min {
		t.Errorf("%s took over %s after %s was cut off from the apiserver, before its lease could expire (%s)", next.Pod, ms(after), old, ms(min))
	}
	var stopped bool
	for _, e := range f.rec.Events() {
		if e.Pod == old && e.Ev == "stop" && e.Mono >= t0 && e.Mono < next.Mono {
			stopped = true
		}
	}
	if !stopped {
		t.Errorf("%s's work did not stop before %s's started: events %v", old, next.Pod, f.rec.Events())
	}
	t.Logf("partitioned holder: %s leads %s after the cut", next.Pod, ms(after))
}
