//go:build e2e

package testenv_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/leasehold/leasehold/internal/image"
	"github.com/leasehold/leasehold/internal/testenv"
)

// TestNodeRunsPodsAndLeavesHostAsFound: a pod on the node reaches the
// apiserver through the `kubernetes` Service with its projected
// ServiceAccount token, as in any cluster; after Stop, the machine is as it
// was before the cluster started.
func TestNodeRunsPodsAndLeavesHostAsFound(t *testing.T) {
	before, err := testenv.SnapshotHost()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	tar := filepath.Join(t.TempDir(), "leasehold.tar")
	const ref = "leasehold.local/leasehold:test"
	if err := image.BuildTarball(t.Context(), root, t.TempDir(), "./cmd/leasehold", "", tar, ref, func(bin string) image.Spec { return image.Leasehold(bin) }); err != nil {
		t.Fatal(err)
	}
	c := testenv.StartNode(t, tar)
	func() {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		holderOfLeaseFromPod(ctx, t, c, ref)
	}()
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	after, err := testenv.SnapshotHost()
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Diff(before); len(d) > 0 {
		t.Errorf("the cluster left the machine changed:\n%s", strings.Join(d, "\n"))
	}
}

// holderOfLeaseFromPod runs `leasehold holder probe` in a pod whose
// ServiceAccount may read Leases, and checks that it prints the holder.
func holderOfLeaseFromPod(ctx context.Context, t *testing.T, c *testenv.Cluster, ref string) {
	t.Helper()
	cs := testenv.Clientset(t, c.ControlPlane)
	const ns = "probe"
	if _, err := c.ServiceAccountToken(ctx, ns, "probe", []rbacv1.PolicyRule{{
		APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get"},
	}}); err != nil {
		t.Fatal(err)
	}
	_, err := cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("someone"), LeaseDurationSeconds: ptr.To(int32(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec: corev1.PodSpec{
			ServiceAccountName: "probe",
			RestartPolicy:      corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "probe", Image: ref, ImagePullPolicy: corev1.PullNever,
				Args: []string{"holder", "probe", "--namespace=" + ns},
			}},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "probe", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			logs, _ := cs.CoreV1().Pods(ns).GetLogs("probe", &corev1.PodLogOptions{}).DoRaw(ctx)
			if p.Status.Phase != corev1.PodSucceeded || strings.TrimSpace(string(logs)) != "someone" {
				t.Fatalf("pod %s; log:\n%s", p.Status.Phase, logs)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod still %s: %+v\nkubelet log:\n%s", p.Status.Phase, p.Status, c.NodeLog("kubelet"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
