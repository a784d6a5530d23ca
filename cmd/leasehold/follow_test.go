package main

import (
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/internal/testproc"
)

// TestRunFollowsItsApp: a replica given --follow-url or --follow-container
// campaigns only while its app is ready and resigns as soon as it is not:
// its command is stopped, the lease released, and another replica leads.
func TestRunFollowsItsApp(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)

	// resigns checks one replica "a" whose app readiness the test sets
	// with setReady, next to a plain replica "b".
	resigns := func(t *testing.T, lease string, a *testproc.Proc, log string, setReady func(bool)) {
		t.Helper()
		first := waitTerm(t, log, nil)
		if first.id != "a" {
			t.Fatalf("first leader %s, want a (b starts once a leads)", first.id)
		}
		b := startCLI(t, cp, append(append([]string{"run", "--lease", lease, "--identity", "b"}, fastTimings...), append([]string{"--"}, replicaWorkload(log)...)...)...)
		setReady(false)
		second := waitTerm(t, log, []string{"a"})
		if second.token <= first.token {
			t.Errorf("b's token %d after a's %d", second.token, first.token)
		}
		a.Stderr.WaitFor(t, "not ready", 5*time.Second)
		a.Stderr.WaitFor(t, "ended (the app is not ready)", 5*time.Second)
		// Ready again: a campaigns, but b leads and keeps the lease.
		setReady(true)
		a.Stderr.WaitFor(t, "is ready", 20*time.Second)
		if h := leaseHolder(t, cs, lease); h != "b" {
			t.Errorf("holder %q after a's app is ready again, want b", h)
		}
		checkTerms(t, log, []workTerm{first, second})
		b.Signal(syscall.SIGTERM)
		b.Wait(t)
		eventually(t, 20*time.Second, "a to lead again after b left", func() bool { return leaseHolder(t, cs, lease) == "a" })
		a.Signal(syscall.SIGTERM)
		// 7: the workload's own exit on SIGTERM; 143: it had not yet set
		// its trap (a had only just started it).
		if code := a.Wait(t); code != 7 && code != 128+int(syscall.SIGTERM) {
			t.Errorf("a exited %d\n%s", code, a.Stderr)
		}
	}

	t.Run("url", func(t *testing.T) {
		t.Parallel()
		var ready atomic.Bool
		ready.Store(true)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if !ready.Load() {
				http.Error(w, "not ready", http.StatusServiceUnavailable)
			}
		}))
		defer srv.Close()
		log := filepath.Join(t.TempDir(), "log")
		a := startCLI(t, cp, append(append([]string{"run", "--lease", "follow-url", "--identity", "a", "--follow-url", srv.URL + "/ready"}, fastTimings...),
			append([]string{"--"}, replicaWorkload(log)...)...)...)
		resigns(t, "follow-url", a, log, ready.Store)
	})

	t.Run("container", func(t *testing.T) {
		t.Parallel()
		pods := cs.CoreV1().Pods("default")
		pod, err := pods.Create(t.Context(), &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "follow-a"},
			Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{
				{Name: "app", Image: "app"}, {Name: "leasehold", Image: "leasehold"},
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The kubelet's part: the app container's readiness in the status.
		setReady := func(ready bool) {
			pod.Status.ContainerStatuses = []corev1.ContainerStatus{
				{Name: "app", Ready: ready, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
				{Name: "leasehold", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			}
			out, err := pods.UpdateStatus(t.Context(), pod, metav1.UpdateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			pod = out
		}
		setReady(true)
		log := filepath.Join(t.TempDir(), "log")
		cmd := exec.Command(binary, append(append([]string{"--kubeconfig", cp.Kubeconfig, "run", "--lease", "follow-container", "--identity", "a",
			"--follow-container", "app", "--pod-aware=false"}, fastTimings...), append([]string{"--"}, replicaWorkload(log)...)...)...)
		cmd.Env = append(cmd.Environ(), "POD_NAME=follow-a", "POD_NAMESPACE=default")
		a := testproc.Start(t, cmd)
		resigns(t, "follow-container", a, log, setReady)
	})

	t.Run("bad input", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			args []string
			env  []string
			code int
			msg  string
		}{
			{[]string{"--follow-url", "localhost:8080"}, nil, ExitUsage, "want an http:// or https:// URL"},
			{[]string{"--follow-url", "http://x/", "--follow-container", "app"}, nil, ExitUsage, "give one"},
			{[]string{"--follow-container", "app"}, nil, ExitUsage, "needs POD_NAME and POD_NAMESPACE"},
			{[]string{"--follow-container", "nosuch"}, []string{"POD_NAME=follow-bad", "POD_NAMESPACE=default"}, ExitError, "pod default/follow-bad"},
		} {
			cmd := exec.Command(binary, append(append([]string{"--kubeconfig", cp.Kubeconfig, "run", "--lease", "follow-bad"}, tc.args...), "--", "true")...)
			cmd.Env = append(cmd.Environ(), tc.env...)
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tc.code || !strings.Contains(string(out), tc.msg) {
				t.Errorf("run %q: exit %d, output %q; want %d and %q", tc.args, code, out, tc.code, tc.msg)
			}
		}
	})
}
