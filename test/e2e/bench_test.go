//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/leasehold/leasehold/internal/testenv"
)

// BenchEnv, set to 1, runs TestBenchNode (`make bench-node`); BenchNEnv sets
// the repetitions of each scenario (default 5).
const (
	BenchEnv  = "LEASEHOLD_BENCH_NODE"
	BenchNEnv = "LEASEHOLD_BENCH_NODE_N"
)

// TestBenchNode is the real-pod benchmark: a 3-replica Deployment of
// deploy/base (`leasehold run` and a worker) and one of client-go elector
// pods (the bench's candidate, same timing: 15s/10s/2s, release on cancel),
// each put through pod-delete, container-kill and rollout, ending in one
// JSON line per scenario and implementation. Times are from the event (the
// delete request, the SIGKILL, the restart) to the new leader's work
// starting, on CLOCK_MONOTONIC, which the pods share with this process.
func TestBenchNode(t *testing.T) {
	if os.Getenv(BenchEnv) != "1" {
		t.Skip("benchmark: run with " + BenchEnv + "=1 (make bench-node)")
	}
	c := node(t)
	n := 5
	if v, err := strconv.Atoi(os.Getenv(BenchNEnv)); err == nil && v > 0 {
		n = v
	}
	fleets := []struct {
		impl, container string
		make            func(t *testing.T) *fleet
	}{
		{"leasehold", "worker", func(t *testing.T) *fleet { return leaseholdFleet(t, c, "bench-leasehold", "base", "") }},
		{"client-go", "candidate", func(t *testing.T) *fleet { return clientGoFleet(t, c, "bench-client-go") }},
	}
	var lines []string
	for _, fl := range fleets {
		f := fl.make(t)
		ctx := t.Context()
		var del, kill []time.Duration
		var transitions []int
		var leaderless []time.Duration
		for range n {
			gap, _, _ := f.deleteLeader(ctx, t)
			del = append(del, gap)
		}
		for range n {
			gap, _, _ := f.killLeader(ctx, t, fl.container)
			kill = append(kill, gap)
		}
		for range n {
			tr, ll := f.rollout(ctx, t, false)
			transitions = append(transitions, tr)
			leaderless = append(leaderless, ll)
		}
		lines = append(lines,
			jsonLine(timesLine("pod-delete", fl.impl, del)),
			jsonLine(timesLine("container-kill", fl.impl, kill)),
			jsonLine(rolloutLine(fl.impl, transitions, leaderless)))
		t.Logf("%s: pod-delete %v, container-kill %v, rollout transitions %v leaderless %v", fl.impl, del, kill, transitions, leaderless)
	}
	for _, l := range lines {
		fmt.Println(l)
	}
}

type timesResult struct {
	Bench string  `json:"bench"`
	Impl  string  `json:"impl"`
	N     int     `json:"n"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

type rolloutResult struct {
	Bench          string  `json:"bench"`
	Impl           string  `json:"impl"`
	N              int     `json:"n"`
	TransitionsP50 int     `json:"transitions_p50"`
	TransitionsMax int     `json:"transitions_max"`
	LeaderlessP50  float64 `json:"leaderless_ms_p50"`
	LeaderlessMax  float64 `json:"leaderless_ms_max"`
}

func timesLine(bench, impl string, ds []time.Duration) timesResult {
	return timesResult{Bench: bench, Impl: impl, N: len(ds), P50: msf(pct(ds, 50)), P99: msf(pct(ds, 99)), Max: msf(pct(ds, 100))}
}

func rolloutLine(impl string, tr []int, ll []time.Duration) rolloutResult {
	return rolloutResult{Bench: "rollout", Impl: impl, N: len(tr), TransitionsP50: pct(tr, 50), TransitionsMax: pct(tr, 100),
		LeaderlessP50: msf(pct(ll, 50)), LeaderlessMax: msf(pct(ll, 100))}
}

// pct is the nearest-rank p-th percentile (the smallest value with at least
// p% of the values at or below it).
func pct[T int | time.Duration](vs []T, p float64) T {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	rank := min(max(int(math.Ceil(p/100*float64(len(s)))), 1), len(s))
	return s[rank-1]
}

func msf(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

func jsonLine(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// clientGoFleet deploys 3 client-go elector pods (the bench's candidate) on
// the Lease "worker", shaped as deploy/base: same labels, grace period,
// security context and default rolling update.
func clientGoFleet(t *testing.T, c *testenv.Cluster, ns string) *fleet {
	t.Helper()
	cs := testenv.Clientset(t, c.ControlPlane)
	Namespace(t, cs, ns)
	ctx := t.Context()
	labels := map[string]string{"app.kubernetes.io/name": "worker"}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "worker"}}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "worker"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"},
	}}}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "worker"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "worker"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "worker", Namespace: ns}},
	}
	env := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "worker"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName:            "worker",
					TerminationGracePeriodSeconds: ptr.To(int64(30)),
					SecurityContext:               &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(65532))},
					Containers: []corev1.Container{{
						Name:  "candidate",
						Image: CandidateImage,
						Args: []string{"--impl=client-go", "--lease=worker", "--namespace=$(POD_NAMESPACE)", "--id=$(POD_NAME)",
							"--lease-duration=15s", "--renew-deadline=10s", "--retry-period=2s", "--release-on-cancel=true"},
						Env: []corev1.EnvVar{env("POD_NAME", "metadata.name"), env("POD_NAMESPACE", "metadata.namespace")},
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
					}},
				},
			},
		},
	}
	var err error
	if _, err = cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err == nil {
		if _, err = cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err == nil {
			if _, err = cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err == nil {
				_, err = cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{})
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{c: c, cs: cs, ns: ns, deployment: "worker", lease: "worker", selector: "app.kubernetes.io/name=worker", replicas: 3}
	f.rec = Record(t.Context(), cs, ns, "candidate")
	t.Cleanup(f.rec.Close)
	return f
}
