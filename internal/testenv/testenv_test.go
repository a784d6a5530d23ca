package testenv_test

import (
	"os/exec"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/internal/testenv"
)

func TestControlPlaneServesAndEnforcesRBAC(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	if _, err := cs.CoordinationV1().Leases("kube-system").List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Fatalf("admin list leases: %v", err)
	}
	out, err := exec.Command(cp.Kubectl(), "--kubeconfig", cp.Kubeconfig, "get", "namespaces", "-o", "name").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "namespace/default") {
		t.Fatalf("kubectl get namespaces: %v\n%s", err, out)
	}

	token, err := cp.ServiceAccountToken(t.Context(), "rbac-test", "app", testenv.LeaseRules())
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(cp.ConfigForToken(token))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.CoordinationV1().Leases("rbac-test").List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Fatalf("service account list leases in its namespace: %v", err)
	}
	if _, err := sa.CoordinationV1().Leases("default").List(t.Context(), metav1.ListOptions{}); err == nil {
		t.Fatal("service account listed leases in another namespace: RBAC is not enforced")
	}
}

// TestBinariesReportTheirVersion: the control plane is built from modules,
// which carry no version of their own; it is stamped at link time, so that
// clients see the real Kubernetes version, not v0.0.0-master.
func TestBinariesReportTheirVersion(t *testing.T) {
	const want = "v1.37.2"
	cp := testenv.Start(t)
	v, err := testenv.Clientset(t, cp).Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != want || v.Major != "1" || v.Minor != "37" {
		t.Errorf("kube-apiserver reports %s (major %q minor %q), want %s", v.GitVersion, v.Major, v.Minor, want)
	}
	out, err := exec.Command(cp.Kubectl(), "version", "--client").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Client Version: "+want) {
		t.Errorf("kubectl version --client: %v\n%s", err, out)
	}
}
