package lease_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/lease"
)

// Integration tests: everything here talks to a real kube-apiserver and etcd.

func kubectl(t *testing.T, cp *testenv.ControlPlane, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), cp.Kubectl(), append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestIntegrationLeaseClient(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	ctx := t.Context()

	c, err := lease.NewClient(cs.CoordinationV1(), "default", "integration")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx); !errors.Is(err, lease.ErrNotFound) {
		t.Fatalf("Get of a missing lease = %v, want ErrNotFound", err)
	}
	acquired := time.Date(2026, 11, 25, 8, 0, 0, 123456789, time.UTC)
	rec := lease.Record{Holder: "pod-a", LeaseDuration: 15 * time.Second, AcquireTime: acquired, RenewTime: acquired.Add(1500 * time.Microsecond), Transitions: 3}
	created, err := c.Create(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, rec); !errors.Is(err, lease.ErrAlreadyExists) {
		t.Fatalf("second Create = %v, want ErrAlreadyExists", err)
	}

	t.Run("read back by lease.Client with microsecond precision", func(t *testing.T) {
		got, err := c.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := rec
		want.AcquireTime = acquired.Truncate(time.Microsecond)
		want.RenewTime = rec.RenewTime.Truncate(time.Microsecond)
		if !recordsEqual(got.Record, want) {
			t.Fatalf("read back %+v, want %+v", got.Record, want)
		}
	})
	t.Run("read back by kubectl", func(t *testing.T) {
		if got := kubectl(t, cp, "", "get", "lease", "integration", "-o", "jsonpath={.spec.holderIdentity} {.spec.leaseDurationSeconds} {.spec.leaseTransitions} {.spec.acquireTime}"); got != "pod-a 15 3 2026-11-25T08:00:00.123456Z" {
			t.Fatalf("kubectl jsonpath = %q", got)
		}
	})
	t.Run("read back by client-go resourcelock", func(t *testing.T) {
		lock := &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: "default", Name: "integration"},
			Client:     cs.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: "client-go"},
		}
		ler, _, err := lock.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ler.HolderIdentity != "pod-a" || ler.LeaseDurationSeconds != 15 || ler.LeaderTransitions != 3 ||
			!ler.AcquireTime.Time.Equal(acquired.Truncate(time.Microsecond)) || !ler.RenewTime.Time.Equal(rec.RenewTime.Truncate(time.Microsecond)) {
			t.Fatalf("client-go reads %+v", ler)
		}
	})
	t.Run("stale resourceVersion conflicts", func(t *testing.T) {
		next := rec
		next.RenewTime = rec.RenewTime.Add(2 * time.Second)
		updated, err := c.Update(ctx, created, next, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Update(ctx, created, next, 0) // created is stale now
		if !errors.Is(err, lease.ErrConflict) {
			t.Fatalf("stale update = %v, want ErrConflict", err)
		}
		var apiErr *lease.APIError
		if !errors.As(err, &apiErr) || apiErr.Verb != "update" || apiErr.Name != "integration" {
			t.Fatalf("error %v is not an *APIError naming the update of default/integration", err)
		}
		if _, err := c.Update(ctx, updated, next, 0); err != nil {
			t.Fatalf("update of the current version: %v", err)
		}
	})
	t.Run("watch sees a change", func(t *testing.T) {
		cur, err := c.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w, err := c.Watch(ctx, cur.ResourceVersion)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		next := cur.Record
		next.Holder = "pod-b"
		next.Transitions++
		if _, err := c.Update(ctx, cur, next, 0); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-w.ResultChan():
			if ev.Type != watch.Modified {
				t.Fatalf("event %v, want Modified", ev.Type)
			}
			if got := lease.NewSnapshot(mustLease(t, ev.Object)).Record.Holder; got != "pod-b" {
				t.Fatalf("watched holder %q, want pod-b", got)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no watch event within 30s")
		}
	})
}

func TestIntegrationTokenSurvivesDeleteAndRecreate(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	ctx := t.Context()
	c, err := lease.NewClient(cs.CoordinationV1(), "default", "recreated")
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.Create(ctx, lease.Record{}.Released(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.CoordinationV1().Leases("default").Delete(ctx, "recreated", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	second, err := c.Create(ctx, lease.Record{}.Released(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if first.UID == second.UID {
		t.Fatal("re-created lease kept its UID")
	}
	a, err := lease.ParseToken(first.ResourceVersion)
	if err != nil {
		t.Fatal(err)
	}
	b, err := lease.ParseToken(second.ResourceVersion)
	if err != nil {
		t.Fatal(err)
	}
	if b <= a {
		t.Fatalf("resourceVersion after re-create %v is not above the old one %v: tokens would go backwards", b, a)
	}
}

func TestIntegrationForbiddenNamesVerb(t *testing.T) {
	cp := testenv.Start(t)
	ctx := t.Context()
	readOnly := []rbacv1.PolicyRule{{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch"}}}
	token, err := cp.ServiceAccountToken(ctx, "team", "reader", readOnly)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cp.ConfigForToken(token))
	if err != nil {
		t.Fatal(err)
	}
	c, err := lease.NewClient(cs.CoordinationV1(), "team", "job")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx); !errors.Is(err, lease.ErrNotFound) {
		t.Fatalf("get with read access = %v, want ErrNotFound", err)
	}
	_, err = c.Create(ctx, lease.Record{Holder: "x", LeaseDuration: time.Second})
	if !errors.Is(err, lease.ErrForbidden) || !lease.Permanent(err) {
		t.Fatalf("create without the verb = %v, want a permanent ErrForbidden", err)
	}
	for _, want := range []string{`verb "create"`, `"leases"`, "coordination.k8s.io", `namespace "team"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// TestIntegrationKubectlWorkflow is the seed workflow of the README: a Lease
// applied, listed, described and queried with kubectl, then read by
// lease.Client.
func TestIntegrationKubectlWorkflow(t *testing.T) {
	cp := testenv.Start(t)
	manifest, err := os.ReadFile(filepath.Join("testdata", "lease.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, cp, string(manifest), "apply", "-f", "-")
	if got := kubectl(t, cp, "", "get", "leases"); !strings.Contains(got, "seed") || !strings.Contains(got, "operator-1") {
		t.Fatalf("kubectl get leases:\n%s", got)
	}
	if got := kubectl(t, cp, "", "describe", "lease", "seed"); !strings.Contains(got, "Holder Identity:") || !strings.Contains(got, "operator-1") {
		t.Fatalf("kubectl describe lease:\n%s", got)
	}
	if got := kubectl(t, cp, "", "get", "lease", "seed", "-o", "jsonpath={.spec.holderIdentity}"); got != "operator-1" {
		t.Fatalf("jsonpath holderIdentity = %q", got)
	}
	c, err := lease.NewClient(testenv.Clientset(t, cp).CoordinationV1(), "default", "seed")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.Record.Holder != "operator-1" || s.Record.LeaseDuration != 30*time.Second || s.Record.Transitions != 2 ||
		!s.Record.RenewTime.Equal(time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)) {
		t.Fatalf("lease.Client reads %+v", s.Record)
	}
}

func mustLease(t *testing.T, obj any) *coordinationv1.Lease {
	t.Helper()
	l, ok := obj.(*coordinationv1.Lease)
	if !ok {
		t.Fatalf("watch object is %T, want *Lease", obj)
	}
	return l
}

func recordsEqual(a, b lease.Record) bool {
	return a.Holder == b.Holder && a.LeaseDuration == b.LeaseDuration && a.AcquireTime.Equal(b.AcquireTime) &&
		a.RenewTime.Equal(b.RenewTime) && a.Transitions == b.Transitions && a.PreferredHolder == b.PreferredHolder && a.Strategy == b.Strategy
}
