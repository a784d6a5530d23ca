//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/internal/testenv"
)

// leaders asks every running pod's leasehold endpoint /leader whether it
// leads, and returns those that do.
func leaders(ctx context.Context, cs kubernetes.Interface, ns string) ([]string, error) {
	var out []string
	cl := &http.Client{Timeout: 2 * time.Second}
	for _, p := range RunningPods(ctx, cs, ns, "app.kubernetes.io/name=worker") {
		resp, err := cl.Get("http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/leader")
		if err != nil {
			return nil, err
		}
		var l struct {
			Me bool `json:"me"`
		}
		err = json.NewDecoder(resp.Body).Decode(&l)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if l.Me {
			out = append(out, p.Name)
		}
	}
	return out, nil
}

// TestManifestsRunWithOneLeader: deploy/base, route-to-leader and sidecar
// run as pods with in-cluster configuration; exactly one of them leads (the
// Lease's holder, and the only one whose /leader says so); the Service of
// route-to-leader has the leader's address as its only ready endpoint.
func TestManifestsRunWithOneLeader(t *testing.T) {
	c := node(t)
	for _, overlay := range []string{"base", "route-to-leader", "sidecar"} {
		t.Run(overlay, func(t *testing.T) {
			ctx := t.Context()
			f := leaseholdFleet(t, c, "e2e-"+overlay, overlay, "")
			f.waitPods(ctx, t)
			var lead []string
			err := Eventually(ctx, 2*time.Minute, func() (bool, string) {
				var err error
				lead, err = leaders(ctx, f.cs, f.ns)
				h := Holder(ctx, f.cs, f.ns, "worker")
				return err == nil && len(lead) == 1 && lead[0] == h, fmt.Sprintf("leaders %v (%v), holder %q", lead, err, h)
			})
			if err != nil {
				t.Fatal(err)
			}
			if overlay == "base" {
				// The pods' logs, which say where the work runs, reach the
				// recorder some time after /leader answers.
				err := Eventually(ctx, 30*time.Second, func() (bool, string) {
					w := Working(f.rec.Events())
					return slices.Equal(w, lead), fmt.Sprintf("worker runs in %v, want only in the leader %v", w, lead)
				})
				if err != nil {
					t.Error(err)
				}
			}
			if overlay != "route-to-leader" {
				return
			}
			leader, err := f.cs.CoreV1().Pods(f.ns).Get(ctx, lead[0], metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			err = Eventually(ctx, time.Minute, func() (bool, string) {
				ready := readyEndpoints(ctx, f.cs, f.ns, "worker")
				return slices.Equal(ready, []string{leader.Status.PodIP}), fmt.Sprintf("ready endpoints %v, leader %s", ready, leader.Status.PodIP)
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// readyEndpoints returns the ready addresses of a Service's EndpointSlices.
func readyEndpoints(ctx context.Context, cs kubernetes.Interface, ns, svc string) []string {
	slices_, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range slices_.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				out = append(out, e.Addresses...)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestDeleteLeaderPodHandsOver: `kubectl delete pod <leader>`: the kubelet's
// SIGTERM makes leasehold stop the worker and release the Lease, and a
// follower takes it; the worker never runs in two pods at once.
func TestDeleteLeaderPodHandsOver(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	f := leaseholdFleet(t, c, "e2e-delete", "base", "")
	released := watchRelease(ctx, t, f.cs, f.ns, "worker")
	gap, old, stopFirst := f.deleteLeader(ctx, t)
	t.Logf("pod-delete: from the delete request to the next leader's work: %s", ms(gap))
	if !stopFirst {
		t.Errorf("the new leader started before the old leader's (%s) worker stopped: %v", old, f.rec.Events())
	}
	select {
	case <-released:
	case <-time.After(10 * time.Second):
		t.Errorf("the deleted leader %s never released the Lease (holderIdentity \"\")", old)
	}
}

// watchRelease returns a channel closed when the Lease is seen released.
func watchRelease(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string) <-chan struct{} {
	w, err := cs.CoordinationV1().Leases(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for ev := range w.ResultChan() {
			lease, ok := ev.Object.(*coordinationv1.Lease)
			if ok && ev.Type == watch.Modified && (lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "") {
				close(done)
				return
			}
		}
	})
	t.Cleanup(func() { w.Stop(); wg.Wait() })
	return done
}

// TestRolloutRestart: `kubectl rollout restart` replaces every pod; a new pod
// ends up leading, and the worker never runs in two pods at once.
func TestRolloutRestart(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	f := leaseholdFleet(t, c, "e2e-rollout", "base", "")
	transitions, leaderless := f.rollout(ctx, t, true)
	t.Logf("rollout: %d leadership transitions, %s without a leader", transitions, ms(leaderless))
	if transitions < 1 {
		t.Errorf("no leadership transition in a rollout that replaced the leader")
	}
}

// TestKillLeaderContainerFailsOver: SIGKILL of the leader container's
// process from the machine (no release): another leader's work starts, and
// not before the kill.
func TestKillLeaderContainerFailsOver(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	f := leaseholdFleet(t, c, "e2e-kill", "base", "")
	gap, old, next := f.killLeader(ctx, t, "worker")
	t.Logf("container-kill: from SIGKILL of %s to work starting in %s: %s", old, next.Pod, ms(gap))
	f.steadyLeader(ctx, t)
}

// TestMigrationJobsNeverOverlap: deploy/migration-job started twice at once
// (two Jobs, one lock): both succeed and their migrations never overlap.
func TestMigrationJobsNeverOverlap(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	cs := testenv.Clientset(t, c.ControlPlane)
	ns := Namespace(t, cs, "e2e-migrate")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, suffix := range []string{"-a", "-b"} {
		wg.Go(func() { errs[i] = Kustomize(ctx, c, ns, "migration-job", "nameSuffix: "+suffix+"\n") })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	type span struct {
		pod        string
		start, end int64
	}
	var spans []span
	err := Eventually(ctx, 3*time.Minute, func() (bool, string) {
		spans = nil
		for _, job := range []string{"db-migrate-a", "db-migrate-b"} {
			j, err := cs.BatchV1().Jobs(ns).Get(ctx, job, metav1.GetOptions{})
			if err != nil || !jobSucceeded(j) {
				return false, fmt.Sprintf("job %s not complete (%v)", job, err)
			}
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job})
			if err != nil {
				return false, err.Error()
			}
			for _, p := range pods.Items {
				s := span{pod: p.Name}
				for _, l := range podLines(ctx, cs, ns, p.Name) {
					switch l.Ev {
					case "start":
						s.start = l.Mono
					case "end":
						s.end = l.Mono
					}
				}
				if s.start != 0 {
					spans = append(spans, s)
				}
			}
		}
		return len(spans) >= 2, fmt.Sprintf("migrations seen: %v", spans)
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.start < b.end && b.start < a.end {
				t.Errorf("migrations overlap: %s [%d, %d] and %s [%d, %d]", a.pod, a.start, a.end, b.pod, b.start, b.end)
			}
		}
	}
}

func jobSucceeded(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

type line struct {
	Ev   string `json:"ev"`
	Mono int64  `json:"mono"`
}

// podLines returns the JSON lines of a pod's log.
func podLines(ctx context.Context, cs kubernetes.Interface, ns, pod string) []line {
	b, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		return nil
	}
	var out []line
	for _, s := range strings.Split(string(b), "\n") {
		var l line
		if json.Unmarshal([]byte(s), &l) == nil && l.Ev != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestRoleWithoutVerb: a Role without "watch": each pod logs an error naming
// the missing verb and exits, and the Deployment is not Available.
func TestRoleWithoutVerb(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	patch := `patches:
  - target:
      kind: Role
      name: worker-leasehold
    patch: |-
      - op: replace
        path: /rules/0/verbs
        value: ["get", "create", "update"]
`
	f := leaseholdFleet(t, c, "e2e-rbac", "base", patch)
	var logs string
	err := Eventually(ctx, 3*time.Minute, func() (bool, string) {
		pods, err := f.cs.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: f.selector})
		if err != nil || len(pods.Items) == 0 {
			return false, fmt.Sprintf("no pods (%v)", err)
		}
		for _, p := range pods.Items {
			for _, st := range p.Status.ContainerStatuses {
				term := st.LastTerminationState.Terminated
				if term == nil {
					term = st.State.Terminated
				}
				if term == nil || term.ExitCode == 0 {
					continue
				}
				b, _ := f.cs.CoreV1().Pods(f.ns).GetLogs(p.Name, &corev1.PodLogOptions{Previous: st.State.Terminated == nil}).DoRaw(ctx)
				logs = string(b)
				if strings.Contains(logs, `RBAC must allow verb "watch"`) {
					return true, ""
				}
			}
		}
		return false, "no container exited with the missing verb in its log yet; last log: " + logs
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod log: %s", strings.TrimSpace(logs))
	// A restarted container serves /healthz for a moment before its check
	// fails, so a replica may count as available in passing; the
	// Deployment's Available condition stays False throughout.
	d, err := f.cs.AppsV1().Deployments(f.ns).Get(ctx, "worker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(d, appsv1.DeploymentAvailable); c.Status != corev1.ConditionFalse || c.Reason != "MinimumReplicasUnavailable" {
		t.Errorf("Deployment condition Available=%s (%s); want False (MinimumReplicasUnavailable)", c.Status, c.Reason)
	}
	if d.Status.UnavailableReplicas == 0 {
		t.Errorf("Deployment shows no unavailable replica")
	}
}

func condition(d *appsv1.Deployment, typ appsv1.DeploymentConditionType) appsv1.DeploymentCondition {
	for _, c := range d.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return appsv1.DeploymentCondition{Status: corev1.ConditionUnknown}
}
