package testenv_test

import (
	"os/exec"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
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

// CPUTime counts the CPU that kube-apiserver and etcd spend: requests make
// both numbers grow (a Lease write costs each of them milliseconds).
func TestCPUTimeGrowsWithRequests(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	api0, etcd0, err := cp.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	if api0 <= 0 || etcd0 <= 0 {
		t.Fatalf("CPUTime = %v, %v after start-up, want both positive", api0, etcd0)
	}
	leases := cs.CoordinationV1().Leases("default")
	id := "cpu"
	l, err := leases.Create(t.Context(), &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "cpu"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &id}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range int32(200) {
		l.Spec.LeaseTransitions = &i
		if l, err = leases.Update(t.Context(), l, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	api1, etcd1, err := cp.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	if api1 <= api0 || etcd1 <= etcd0 {
		t.Errorf("200 Lease writes: CPUTime went from %v, %v to %v, %v; want both to grow", api0, etcd0, api1, etcd1)
	}
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.CPUTime(); err == nil {
		t.Error("CPUTime of a stopped control plane: no error")
	}
}
