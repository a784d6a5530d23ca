//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/internal/testenv"
)

// fleet is a Deployment of elector pods on one Lease, and the recorder of
// their work's start and stop lines.
type fleet struct {
	c          *testenv.Cluster
	cs         kubernetes.Interface
	ns         string
	deployment string
	lease      string
	selector   string
	replicas   int
	rec        *Recorder
}

// steadyLeader waits until every replica runs and the Lease's holder is a
// running pod whose work has started (its last line is "start"), and
// returns that pod.
func (f *fleet) steadyLeader(ctx context.Context, t testing.TB) string {
	t.Helper()
	var leader string
	err := Eventually(ctx, 3*time.Minute, func() (bool, string) {
		pods := RunningPods(ctx, f.cs, f.ns, f.selector)
		h := Holder(ctx, f.cs, f.ns, f.lease)
		var names []string
		for _, p := range pods {
			names = append(names, p.Name)
		}
		if len(pods) != f.replicas || !slices.Contains(names, h) {
			return false, fmt.Sprintf("running pods %v, holder %q", names, h)
		}
		var last string
		for _, e := range f.rec.Events() {
			if e.Pod == h {
				last = e.Ev
			}
		}
		leader = h
		return last == "start", fmt.Sprintf("holder %s has not started work (events %v)", h, f.rec.Events())
	})
	if err != nil {
		t.Fatalf("no steady leader: %v", err)
	}
	return leader
}

// deleteLeader deletes the leading pod (the kubelet sends SIGTERM) and
// returns the time from the delete request to the next leader's work
// starting, the old leader, and whether the old leader's work stopped
// before the new one's started.
func (f *fleet) deleteLeader(ctx context.Context, t testing.TB) (gap time.Duration, old string, stopBeforeStart bool) {
	t.Helper()
	old = f.steadyLeader(ctx, t)
	t0 := Mono()
	if err := f.cs.CoreV1().Pods(f.ns).Delete(ctx, old, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	next, err := f.rec.FirstStartAfter(ctx, t0, 2*time.Minute, old)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range f.rec.Events() {
		if e.Pod == old && e.Ev == "stop" && e.Mono >= t0 && e.Mono <= next.Mono {
			stopBeforeStart = true
		}
	}
	return time.Duration(next.Mono - t0), old, stopBeforeStart
}

// killLeader SIGKILLs the main process of the leading pod's container from
// this machine and returns the time from the kill to the next leader's work
// starting (in another pod, or in the restarted container).
func (f *fleet) killLeader(ctx context.Context, t testing.TB, container string) (time.Duration, string, Event) {
	t.Helper()
	leader, pid := f.leaderContainer(ctx, t, container)
	t0 := Mono()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	next, err := f.rec.FirstStartAfter(ctx, t0, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(next.Mono - t0), leader, next
}

// rollout restarts the Deployment and returns the leadership transitions
// (works started) and the total time no work ran, from the restart until a
// new pod leads; it fails the test if two pods ever worked at once.
func (f *fleet) rollout(ctx context.Context, t testing.TB, checkOverlap bool) (transitions int, leaderless time.Duration) {
	t.Helper()
	old := f.steadyLeader(ctx, t)
	var before []string
	for _, p := range RunningPods(ctx, f.cs, f.ns, f.selector) {
		before = append(before, p.Name)
	}
	t0 := Mono()
	if err := Kubectl(ctx, f.c, "-n", f.ns, "rollout", "restart", "deployment/"+f.deployment); err != nil {
		t.Fatal(err)
	}
	if err := Kubectl(ctx, f.c, "-n", f.ns, "rollout", "status", "deployment/"+f.deployment, "--timeout=5m"); err != nil {
		t.Fatal(err)
	}
	var leader string
	err := Eventually(ctx, 3*time.Minute, func() (bool, string) {
		leader = f.steadyLeader(ctx, t)
		return !slices.Contains(before, leader), "the leader " + leader + " is an old pod"
	})
	if err != nil {
		t.Fatal(err)
	}
	working := []string{old}
	var gapStart int64 = -1
	for _, e := range f.rec.Events() {
		if e.Mono < t0 {
			continue
		}
		if e.Ev == "start" {
			transitions++
			if len(working) == 0 && gapStart >= 0 {
				leaderless += time.Duration(e.Mono - gapStart)
			}
			working = append(working, e.Pod)
			if checkOverlap && len(working) > 1 {
				t.Errorf("two pods worked at once: %v (events %v)", working, f.rec.Events())
			}
		} else if i := slices.Index(working, e.Pod); i >= 0 {
			working = slices.Delete(working, i, i+1)
			if len(working) == 0 {
				gapStart = e.Mono
			}
		}
	}
	return transitions, leaderless
}

// waitPods waits for n running pods.
func (f *fleet) waitPods(ctx context.Context, t testing.TB) {
	t.Helper()
	err := Eventually(ctx, 3*time.Minute, func() (bool, string) {
		n := len(RunningPods(ctx, f.cs, f.ns, f.selector))
		return n == f.replicas, fmt.Sprintf("%d of %d pods running", n, f.replicas)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// leaseholdFleet applies deploy/<overlay> in a new namespace.
func leaseholdFleet(t testing.TB, c *testenv.Cluster, ns, overlay, extra string) *fleet {
	t.Helper()
	cs := testenv.Clientset(t, c.ControlPlane)
	Namespace(t, cs, ns)
	if err := Kustomize(t.Context(), c, ns, overlay, extra); err != nil {
		t.Fatal(err)
	}
	container := "worker"
	if overlay == "sidecar" {
		container = "leasehold"
	}
	f := &fleet{c: c, cs: cs, ns: ns, deployment: "worker", lease: "worker", selector: "app.kubernetes.io/name=worker", replicas: 3}
	f.rec = Record(context.Background(), cs, ns, container)
	t.Cleanup(f.rec.Close)
	return f
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/1e6) }
