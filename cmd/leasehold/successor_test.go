package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/internal/testproc"
)

// TestRunHandsOverToTheNewRevision: mid-rollout, three replicas of the old
// revision and one of the new run; the leader (old) gets SIGTERM and hands
// the lease to the new one, which the rollout will keep, not to an old
// peer that is next to go.
func TestRunHandsOverToTheNewRevision(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	pods := cs.CoreV1().Pods("default")
	mkPod := func(name, rev string) {
		p, err := pods.Create(t.Context(), &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "roll", "pod-template-hash": rev}},
			Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "worker", Image: "worker"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
		if _, err := pods.UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"roll-old-a", "roll-old-b", "roll-old-c"} {
		mkPod(name, "old")
	}
	time.Sleep(1100 * time.Millisecond) // creation times have whole seconds
	mkPod("roll-new-a", "new")

	log := filepath.Join(t.TempDir(), "log")
	replica := func(pod string) *testproc.Proc {
		cmd := exec.Command(binary, append(append([]string{"--kubeconfig", cp.Kubeconfig, "run", "--lease", "roll", "--http", "127.0.0.1:0"}, fastTimings...),
			append([]string{"--"}, replicaWorkload(log)...)...)...)
		cmd.Env = append(cmd.Environ(), "POD_NAME="+pod, "POD_NAMESPACE=default")
		return testproc.Start(t, cmd)
	}
	leader := replica("roll-old-a")
	if first := waitTerm(t, log, nil); first.id != "roll-old-a" {
		t.Fatalf("first leader %s", first.id)
	}
	var followers []*testproc.Proc
	for _, pod := range []string{"roll-old-b", "roll-old-c", "roll-new-a"} {
		p := replica(pod)
		p.HTTPAddr(t) // running and watching
		followers = append(followers, p)
	}
	leader.Signal(syscall.SIGTERM)
	leader.Wait(t)
	if !strings.Contains(leader.Stderr.String(), "handing the lease to roll-new-a (ready, of the newest revision)") {
		t.Errorf("the leader did not choose the new revision:\n%s", leader.Stderr)
	}
	next := waitTerm(t, log, []string{"roll-old-a"})
	if next.id != "roll-new-a" {
		t.Errorf("%s leads after the old leader left, want roll-new-a", next.id)
	}
	for _, p := range followers {
		p.Signal(syscall.SIGTERM)
		p.Wait(t)
	}
}

// TestRunSaysOncePodAwareIsOff: in a Pod whose container ID this process
// cannot see, run says once that its terms are not pod-aware, and why.
func TestRunSaysOncePodAwareIsOff(t *testing.T) {
	cp := testenv.Start(t)
	cmd := exec.Command(binary, append(append([]string{"--kubeconfig", cp.Kubeconfig, "run", "--lease", "pa-off"}, fastTimings...), "--", "sh", "-c", "echo running; exit 0")...)
	cmd.Env = append(cmd.Environ(), "POD_NAME=pa-off", "POD_NAMESPACE=default", "POD_UID=uid-1", "LEASEHOLD_CONTAINER=worker")
	p := testproc.Start(t, cmd)
	if code := p.Wait(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.Stderr)
	}
	const want = "pod-aware takeover off for this replica's terms (podwitness: own container ID is not visible in /proc/self/cgroup"
	if n := strings.Count(p.Stderr.String(), want); n != 1 {
		t.Errorf("stderr says %d times %q, want once:\n%s", n, want, p.Stderr)
	}
}
