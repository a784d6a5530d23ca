// Package deploy_test checks what deploy/ and examples/ promise, against a
// real kube-apiserver: the kustomizations render and are accepted by the
// apiserver, the Role is exactly what a candidate needs, and the Python
// example leads one replica at a time.
package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/leasehold/leasehold/election"
	holderpkg "github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/internal/podwitness"
	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/lease"
)

// Short timings (LeaseDuration in whole seconds, RetryPeriod < RenewDeadline
// < LeaseDuration).
const (
	leaseDuration = 2 * time.Second
	renewDeadline = 1500 * time.Millisecond
	retryPeriod   = 300 * time.Millisecond
)

// kustomizations are the folders under deploy/ that kubectl kustomize builds.
var kustomizations = []string{"base", "route-to-leader", "sidecar", "migration-job", "sharded"}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// kubectl runs the control plane's kubectl with the admin kubeconfig.
func kubectl(t *testing.T, cp *testenv.ControlPlane, stdin []byte, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cp.Kubectl(), append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.Bytes()
}

// render builds deploy/<dir> with kubectl kustomize.
func render(t *testing.T, cp *testenv.ControlPlane, dir string) []byte {
	t.Helper()
	return kubectl(t, cp, nil, "kustomize", filepath.Join(repoRoot(t), "deploy", dir))
}

// object is one rendered manifest: its kind, name and YAML.
type object struct {
	kind, name string
	yaml       []byte
}

func objects(t *testing.T, manifests []byte) []object {
	t.Helper()
	var objs []object
	for doc := range strings.SplitSeq(string(manifests), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("rendered manifest: %v\n%s", err, doc)
		}
		if meta.Metadata.Namespace != "" {
			t.Errorf("%s %s sets namespace %q; the manifests must be namespace-agnostic", meta.Kind, meta.Metadata.Name, meta.Metadata.Namespace)
		}
		objs = append(objs, object{kind: meta.Kind, name: meta.Metadata.Name, yaml: []byte(doc)})
	}
	return objs
}

// find decodes the only object of kind into v.
func find(t *testing.T, objs []object, kind string, v any) bool {
	t.Helper()
	var found []object
	for _, o := range objs {
		if o.kind == kind {
			found = append(found, o)
		}
	}
	switch len(found) {
	case 0:
		return false
	case 1:
		if err := yaml.UnmarshalStrict(found[0].yaml, v); err != nil {
			t.Fatalf("decode %s %s: %v", kind, found[0].name, err)
		}
		return true
	}
	t.Fatalf("%d objects of kind %s, want at most one", len(found), kind)
	return false
}

func kinds(objs []object) []string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, o.kind)
	}
	slices.Sort(ks)
	return ks
}

// TestManifestsApply renders every kustomization and has the apiserver
// validate and admit each manifest (kubectl apply --dry-run=server), then
// checks what each variant promises: three replicas, identity and namespace
// from the downward API, probes on the leasehold endpoints.
func TestManifestsApply(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			ns := "deploy-" + dir
			if err := testenv.EnsureNamespace(t.Context(), cs, ns); err != nil {
				t.Fatal(err)
			}
			manifests := render(t, cp, dir)
			objs := objects(t, manifests)
			out := kubectl(t, cp, manifests, "apply", "--dry-run=server", "-n", ns, "-f", "-")
			if n := strings.Count(string(out), "(server dry run)"); n != len(objs) {
				t.Errorf("apply --dry-run=server confirmed %d objects, rendered %d:\n%s", n, len(objs), out)
			}

			if dir == "migration-job" {
				if got, want := kinds(objs), []string{"Job", "Role", "RoleBinding", "ServiceAccount"}; !slices.Equal(got, want) {
					t.Errorf("kinds %v, want %v", got, want)
				}
				var j batchv1.Job
				if !find(t, objs, "Job", &j) {
					t.Fatal("no Job")
				}
				c := j.Spec.Template.Spec.Containers[0]
				args := append(slices.Clone(c.Command), c.Args...)
				for _, a := range []string{"leasehold", "lock", "db-migrate", "--identity=$(POD_NAME)", "--timeout=10m", "--", "/app/migrate"} {
					if !slices.Contains(args, a) {
						t.Errorf("job args %q lack %q", args, a)
					}
				}
				return
			}
			want := []string{"Deployment", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount"}
			if dir == "route-to-leader" {
				want = slices.DeleteFunc(want, func(k string) bool { return k == "PodDisruptionBudget" })
			}
			if got := kinds(objs); !slices.Equal(got, want) {
				t.Errorf("kinds %v, want %v", got, want)
			}
			var d appsv1.Deployment
			if !find(t, objs, "Deployment", &d) {
				t.Fatal("no Deployment")
			}
			checkDeployment(t, dir, &d)
		})
	}
}

func checkDeployment(t *testing.T, dir string, d *appsv1.Deployment) {
	t.Helper()
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", d.Spec.Replicas)
	}
	if d.Spec.Template.Spec.ServiceAccountName == "" {
		t.Error("no serviceAccountName")
	}
	runsLeasehold := false
	for _, c := range d.Spec.Template.Spec.Containers {
		args := append(slices.Clone(c.Command), c.Args...)
		if !slices.Contains(args, "run") {
			continue
		}
		runsLeasehold = true
		for _, a := range []string{"--lease=worker", "--identity=$(POD_NAME)", "--namespace=$(POD_NAMESPACE)", "--http=:8080", "--"} {
			if !slices.Contains(args, a) {
				t.Errorf("container %s: args %q lack %q", c.Name, args, a)
			}
		}
		env := map[string]string{}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
				env[e.Name] = e.ValueFrom.FieldRef.FieldPath
			}
		}
		if env["POD_NAME"] != "metadata.name" || env["POD_NAMESPACE"] != "metadata.namespace" {
			t.Errorf("container %s: downward API env %v, want POD_NAME and POD_NAMESPACE", c.Name, env)
		}
		wantReady := "/healthz"
		if dir == "route-to-leader" {
			wantReady = "/readyz"
		}
		if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != wantReady {
			t.Errorf("container %s: readinessProbe %+v, want GET %s", c.Name, p, wantReady)
		}
		if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/livez" {
			t.Errorf("container %s: livenessProbe %+v, want GET /livez", c.Name, p)
		}
	}
	if !runsLeasehold {
		t.Errorf("no container runs `leasehold run`")
	}
	if args := append(slices.Clone(d.Spec.Template.Spec.Containers[0].Command), d.Spec.Template.Spec.Containers[0].Args...); (dir == "sharded") != slices.Contains(args, "--shards=16") {
		t.Errorf("%s: args %q, want --shards=16 only in the sharded variant", dir, args)
	}
	if dir == "sidecar" && len(d.Spec.Template.Spec.Containers) != 2 {
		t.Errorf("sidecar: %d containers, want the app and leasehold", len(d.Spec.Template.Spec.Containers))
	}
}

// baseRole returns the Role that deploy/base grants the workload.
func baseRole(t *testing.T, cp *testenv.ControlPlane) rbacv1.Role {
	t.Helper()
	var role rbacv1.Role
	if !find(t, objects(t, render(t, cp, "base")), "Role", &role) {
		t.Fatal("deploy/base renders no Role")
	}
	return role
}

// TestRoleIsExactlyEnough runs a candidate with a real service-account token
// bound to the rules of deploy/base's Role: it leads. Then, for each verb of
// the Role, a candidate whose token lacks only that verb fails with an error
// that names it, so no verb in the Role is superfluous.
func TestRoleIsExactlyEnough(t *testing.T) {
	cp := testenv.Start(t)
	role := baseRole(t, cp)
	const ns = "deploy-rbac"
	admin := testenv.Clientset(t, cp)

	t.Run("all verbs: leads", func(t *testing.T) {
		cs := clientsetFor(t, cp, ns, "worker", role.Rules)
		if err := leadFor(t, elector(t, cs, ns, "rbac-all", "worker"), time.Second); err != nil {
			t.Fatal(err)
		}
		if h := holder(t, admin, ns, "rbac-all"); h != "" {
			t.Errorf("holder %q after Run returned, want the lease released", h)
		}
	})

	// The hardening that deploy/README.md suggests: get, watch and update
	// confined to the one Lease by resourceNames (create cannot be).
	t.Run("confined by resourceNames: leads", func(t *testing.T) {
		const name = "rbac-named"
		rules := []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "watch", "update"}, ResourceNames: []string{name}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		}
		cs := clientsetFor(t, cp, ns, "named", rules)
		if err := leadFor(t, elector(t, cs, ns, name, "named"), time.Second); err != nil {
			t.Fatal(err)
		}
		if h := holder(t, admin, ns, name); h != "" {
			t.Errorf("holder %q after Run returned, want the lease released", h)
		}
	})

	if len(role.Rules) == 0 {
		t.Fatal("the Role grants no verbs")
	}
	t.Run("pods: the kubelet's evidence is read", func(t *testing.T) {
		cs := clientsetFor(t, cp, ns, "witness", role.Rules)
		if err := witnessStop(t, admin, cs, ns, "evidence"); err != nil {
			t.Fatal(err)
		}
	})
	for _, rule := range role.Rules {
		for _, verb := range rule.Verbs {
			resource := strings.Join(rule.Resources, ",")
			t.Run(resource+" without "+verb, func(t *testing.T) {
				t.Parallel()
				rules := without(role.Rules, resource, verb)
				if resource == "pods" && verb == "list" {
					// Optional: without it a leader shutting down releases
					// the lease to anyone, and says why.
					cs := clientsetFor(t, cp, ns, "pods-no-"+verb, rules)
					if _, err := admin.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
						ObjectMeta: metav1.ObjectMeta{Name: "no-list", Labels: map[string]string{"app": "worker"}},
						Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "worker", Image: "worker"}}},
					}, metav1.CreateOptions{}); err != nil {
						t.Fatal(err)
					}
					if _, _, err := podwitness.Successor(t.Context(), clientsetFor(t, cp, ns, "pods-all", role.Rules).CoreV1(), ns, "no-list"); err != nil {
						t.Fatalf("with the Role's verbs: %v", err)
					}
					_, _, err := podwitness.Successor(t.Context(), cs.CoreV1(), ns, "no-list")
					if err == nil || !strings.Contains(err.Error(), `cannot list resource "pods"`) {
						t.Fatalf("successor = %v\nwant a forbidden error naming verb list on pods", err)
					}
					return
				}
				if resource == "pods" {
					// Optional: without it a follower waits the lease
					// duration, and the witness says why.
					cs := clientsetFor(t, cp, ns, "pods-no-"+verb, rules)
					err := witnessStop(t, admin, cs, ns, "pods-no-"+verb)
					if !errors.Is(err, podwitness.ErrForbidden) || !strings.Contains(err.Error(), fmt.Sprintf("cannot %s resource \"pods\"", verb)) {
						t.Fatalf("witness = %v\nwant a forbidden error naming verb %q on pods", err, verb)
					}
					return
				}
				name := "rbac-no-" + verb
				if verb != "create" {
					// A released lease, as leasehold leaves it, so that taking it
					// needs update rather than create.
					ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
					defer cancel()
					if err := elector(t, admin, ns, name, "admin").Run(ctx, func(context.Context) error { return nil }); err != nil {
						t.Fatalf("prepare lease %s: %v", name, err)
					}
				}
				cs := clientsetFor(t, cp, ns, "no-"+verb, rules)
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				err := elector(t, cs, ns, name, "worker").Run(ctx, func(ctx context.Context) error {
					<-ctx.Done()
					return nil
				})
				if !errors.Is(err, lease.ErrForbidden) || !strings.Contains(err.Error(), fmt.Sprintf("verb %q", verb)) {
					t.Fatalf("Run = %v\nwant a forbidden error naming verb %q", err, verb)
				}
				t.Logf("without %q: %v", verb, err)
			})
		}
	}
}

// witnessStop plays a leader that published its container instance and
// crashed, and the kubelet that reports the container terminated; a
// witness using cs must see that evidence. It returns the witness's error.
func witnessStop(t *testing.T, admin, cs kubernetes.Interface, ns, name string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	pod, err := admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "worker", Image: "worker"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := "containerd://" + strings.Repeat("ab", 32)
	inst := lease.Instance{Namespace: ns, Pod: name, PodUID: pod.UID, Container: "worker", ContainerID: id}
	adminClient, err := lease.NewClient(admin.CoordinationV1(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	obs := holderpkg.NewObserver(adminClient, nil, retryPeriod)
	cand, err := holderpkg.NewCandidate(obs, holderpkg.CandidateConfig{Identity: name, Instance: &inst,
		Timing: holderpkg.Timing{LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { _ = obs.Run(ctx) })
	term, err := cand.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	term.Abandon()
	// The container runs; the kubelet reports it terminated only once the
	// witness has had time to read the Pod and start watching it.
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "worker", ContainerID: id,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	if pod, err = admin.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	c, err := lease.NewClient(cs.CoordinationV1(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	fobs := holderpkg.NewObserver(c, nil, retryPeriod)
	w := podwitness.New(cs.CoreV1(), fobs, nil, retryPeriod)
	wctx, stop := context.WithCancel(ctx)
	wg.Go(func() { _ = fobs.Run(wctx) })
	runErr := make(chan error, 1)
	wg.Go(func() { runErr <- w.Run(wctx) })
	defer stop()
	select {
	case err := <-runErr:
		return err
	case <-time.After(time.Second):
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "worker", ContainerID: id,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, ContainerID: id}}}}
	if _, err := admin.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for !w.Stopped(inst) {
		select {
		case err := <-runErr:
			return err
		case <-ctx.Done():
			return fmt.Errorf("no evidence seen: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// leadFor runs e until it has led for d (the leader renews every
// retryPeriod, and a forbidden watch would end the term), then lets Run
// release the lease and return. It reports what went wrong.
func leadFor(t *testing.T, e *election.Elector, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var token lease.Token
	held := false
	err := e.Run(ctx, func(ctx context.Context) error {
		token, _ = election.TokenFrom(ctx)
		select {
		case <-ctx.Done():
			return fmt.Errorf("term ended after less than %v: %w", d, context.Cause(ctx))
		case <-time.After(d):
			held = true
			return nil // done: Run releases the lease and returns nil
		}
	})
	switch {
	case err != nil:
		return fmt.Errorf("Run = %w", err)
	case !held || token == 0:
		return fmt.Errorf("held=%v token=%d; want to lead for %v with a token", held, token, d)
	}
	return nil
}

// without returns a copy of rules with verb removed.
func without(rules []rbacv1.PolicyRule, resource, verb string) []rbacv1.PolicyRule {
	out := make([]rbacv1.PolicyRule, 0, len(rules))
	for _, r := range rules {
		r = *r.DeepCopy()
		if strings.Join(r.Resources, ",") == resource {
			r.Verbs = slices.DeleteFunc(r.Verbs, func(v string) bool { return v == verb })
		}
		if len(r.Verbs) > 0 {
			out = append(out, r)
		}
	}
	return out
}

// clientsetFor mints a token for the ServiceAccount ns/sa bound to rules and
// returns a clientset that uses it.
func clientsetFor(t *testing.T, cp *testenv.ControlPlane, ns, sa string, rules []rbacv1.PolicyRule) kubernetes.Interface {
	t.Helper()
	token, err := cp.ServiceAccountToken(t.Context(), ns, sa, rules)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cp.ConfigForToken(token))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func elector(t *testing.T, cs kubernetes.Interface, ns, name, identity string) *election.Elector {
	t.Helper()
	e, err := election.New(election.Config{
		Leases: cs.CoordinationV1(), Namespace: ns, Name: name, Identity: identity,
		LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func holder(t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	l, err := cs.CoordinationV1().Leases(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}
