package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/internal/testenv"
)

var demoNamespace = regexp.MustCompile(`namespace (leasehold-demo-[a-z0-9]+)`)

// TestDemo runs `leasehold demo` end to end against a control plane named by
// the kubeconfig, as a user would: three `leasehold run` replicas in a
// namespace of the tour's own, deleted at the end with its Lease.
func TestDemo(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)

	t.Run("tour through KUBECONFIG", func(t *testing.T) {
		r := runBinary(t, []string{"KUBECONFIG=" + cp.Kubeconfig}, binary, "demo", "--lease-duration", "3s").ok(t)
		for _, want := range []string{"1. Crash", "2. Planned handoff", "3. Graceful shutdown", "Measured: crash failover", "Deleted Lease"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
			}
		}
		checkDemoCleanedUp(t, cs, r.stdout)
	})

	t.Run("interrupted", func(t *testing.T) {
		// --kubeconfig this time: the replicas get it from the demo.
		p := startCLI(t, cp, "demo", "--lease-duration", "3s")
		p.Stdout.WaitFor(t, " leads; ", time.Minute)
		p.Signal(syscall.SIGINT)
		if code := p.Wait(t); code != ExitError {
			t.Errorf("interrupted demo exited %d, want %d\nstderr:\n%s", code, ExitError, p.Stderr)
		}
		if !strings.Contains(p.Stderr.String(), "interrupted") {
			t.Errorf("stderr does not say the tour was interrupted:\n%s", p.Stderr)
		}
		checkDemoCleanedUp(t, cs, p.Stdout.String())
	})
}

// checkDemoCleanedUp checks that the namespace the demo's output names is
// gone or being deleted, and holds no Lease.
func checkDemoCleanedUp(t *testing.T, cs kubernetes.Interface, stdout string) {
	t.Helper()
	m := demoNamespace.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("the demo's output names no leasehold-demo-* namespace:\n%s", stdout)
	}
	ns, err := cs.CoreV1().Namespaces().Get(t.Context(), m[1], metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		t.Fatal(err)
	case ns.DeletionTimestamp == nil:
		t.Errorf("namespace %s not deleted after the demo", m[1])
	}
	leases, err := cs.CoordinationV1().Leases(m[1]).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Items) != 0 {
		t.Errorf("namespace %s still holds %d Leases after the demo", m[1], len(leases.Items))
	}
}

// TestDemoNeedsACluster: without a kubeconfig the demo refuses, and starts
// nothing.
func TestDemoNeedsACluster(t *testing.T) {
	r := runBinary(t, []string{"KUBECONFIG=" + filepath.Join(t.TempDir(), "none")}, binary, "demo")
	r.fails(t, ExitError, "no cluster configured", "make demo")
}

// TestNoTestHarnessInTheBinary: the shipped CLI links neither the testing
// package nor Leasehold's test harness.
func TestNoTestHarnessInTheBinary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const module = "github.com/leasehold/leasehold/"
	harness := []string{"internal/testenv", "internal/testproc", "internal/fakelease", "internal/chaos", "internal/candidate", "test"}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "testing" || strings.HasPrefix(pkg, "testing/") {
			t.Errorf("leasehold links %s", pkg)
		}
		for _, h := range harness {
			if pkg == module+h || strings.HasPrefix(pkg, module+h+"/") {
				t.Errorf("leasehold links the test harness %s", pkg)
			}
		}
	}
}

// TestKubeFlagArgs: the replicas get the kubeconfig flags the demo was
// given, repeated flags repeated, and not the namespace.
func TestKubeFlagArgs(t *testing.T) {
	root := newRoot(IO{})
	args := []string{"--kubeconfig", "k.yaml", "demo", "--context", "c", "-n", "ignored", "--as-group", "a", "--as-group", "b", "--lease-duration", "3s"}
	demo, rest, err := root.Find(args)
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(kubeFlagArgs(demo.Root().PersistentFlags()), " ")
	if want := "--as-group=a --as-group=b --context=c --kubeconfig=k.yaml"; got != want {
		t.Errorf("kubeFlagArgs = %q, want %q", got, want)
	}
}
