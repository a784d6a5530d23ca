package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/lease"
)

var updateGolden = flag.Bool("update", false, "rewrite cmd/leasehold/testdata/*.golden from the output")

// fixtureNow is the time the fixture Leases are judged at (--now), so that
// every column of the tables is stable.
var fixtureNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

const fixtureNowFlag = "--now=2030-01-01T00:00:00Z"

// fixtureLease is one Lease of the fixture, times relative to fixtureNow.
type fixtureLease struct {
	ns, name, holder   string
	duration           int32
	acquired, renewed  time.Duration // before fixtureNow
	transitions        int32
	token, preferredTo string // annotations, as written by Leasehold
	unlabelled         bool
}

var fixtureLeases = []fixtureLease{
	{ns: "golden-a", name: "held", holder: "pod-a", duration: 15, acquired: time.Hour, renewed: 5 * time.Second, transitions: 3, token: "4242/3/pod-a"},
	{ns: "golden-a", name: "expired", holder: "pod-b", duration: 10, acquired: 2 * time.Hour, renewed: 3 * time.Minute, transitions: 7},
	{ns: "golden-a", name: "released", holder: "", duration: 1, acquired: 10 * time.Minute, renewed: 10 * time.Minute, transitions: 2},
	{ns: "golden-a", name: "unlabelled", holder: "pod-x", duration: 15, acquired: time.Minute, renewed: 2 * time.Second, unlabelled: true},
	{ns: "golden-b", name: "handoff", holder: "pod-c", duration: 30, acquired: 90 * time.Second, renewed: time.Second, transitions: 1, token: "5000/1/pod-c", preferredTo: "1/pod-d"},
	// A token recorded in an earlier term (a client-go holder took over): not shown.
	{ns: "golden-b", name: "stale-token", holder: "pod-e", duration: 15, acquired: 30 * time.Second, renewed: 0, transitions: 5, token: "4000/4/pod-e"},
}

// createFixture creates the fixture Leases and, on golden-b/handoff, one
// LeaderElection Event.
func createFixture(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	ctx := t.Context()
	for _, ns := range []string{"golden-a", "golden-b"} {
		if err := testenv.EnsureNamespace(ctx, cs, ns); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range fixtureLeases {
		rec := lease.Record{
			Holder:        f.holder,
			LeaseDuration: time.Duration(f.duration) * time.Second,
			AcquireTime:   fixtureNow.Add(-f.acquired),
			RenewTime:     fixtureNow.Add(-f.renewed),
			Transitions:   f.transitions,
		}
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: f.name, Annotations: map[string]string{}},
			Spec:       rec.ToSpec(),
		}
		if !f.unlabelled {
			l.Labels = map[string]string{"leasehold-test": "golden"}
		}
		if f.token != "" {
			l.Annotations[lease.TokenAnnotation] = f.token
		}
		if f.preferredTo != "" {
			l.Annotations[lease.PreferredHolderAnnotation] = f.preferredTo
		}
		out, err := cs.CoordinationV1().Leases(f.ns).Create(ctx, l, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create lease %s/%s: %v", f.ns, f.name, err)
		}
		if f.name == "handoff" {
			createLeaseEvent(t, cs, out, "pod-c became leader", fixtureNow.Add(-90*time.Second), fixtureNow.Add(-30*time.Second))
		}
	}
}

// createLeaseEvent records a LeaderElection Event about l, as an elector's
// recorder does.
func createLeaseEvent(t *testing.T, cs kubernetes.Interface, l *coordinationv1.Lease, msg string, first, last time.Time) {
	t.Helper()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: l.Namespace, GenerateName: l.Name + "."},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "coordination.k8s.io/v1", Kind: "Lease",
			Namespace: l.Namespace, Name: l.Name, UID: l.UID, ResourceVersion: l.ResourceVersion,
		},
		Reason:         "LeaderElection",
		Message:        msg,
		Type:           corev1.EventTypeNormal,
		Source:         corev1.EventSource{Component: "leasehold-test", Host: "node-1"},
		FirstTimestamp: metav1.NewTime(first),
		LastTimestamp:  metav1.NewTime(last),
		Count:          1,
	}
	if _, err := cs.CoreV1().Events(l.Namespace).Create(t.Context(), ev, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create event: %v", err)
	}
}

// checkGolden compares got with testdata/name.golden (rewritten with -update).
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// ok fails the test unless r exited 0.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

// fails checks that r exited with code and that stderr names every want.
func (r result) fails(t *testing.T, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr does not name %q:\n%s", w, r.stderr)
		}
	}
}

// runBinary runs path with args and env (added to a minimal environment)
// and waits, at most a minute.
func runBinary(t *testing.T, env []string, path string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append([]string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", path, args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

func TestGet(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	createFixture(t, cs)

	t.Run("golden", func(t *testing.T) {
		for _, tc := range []struct {
			golden string
			args   []string
		}{
			{"get", []string{"get", "-n", "golden-a"}},
			{"get", []string{"list", "-n", "golden-a"}},
			{"get-one", []string{"get", "held", "-n", "golden-a"}},
			{"get-all", []string{"get", "-A", "-l", "leasehold-test=golden"}},
			{"get-all", []string{"list", "--all-namespaces", "--selector", "leasehold-test=golden"}},
			{"get-wide", []string{"get", "-A", "-l", "leasehold-test=golden", "-o", "wide"}},
			{"describe", []string{"describe", "handoff", "-n", "golden-b"}},
			{"describe-released", []string{"describe", "released", "-n", "golden-a"}},
		} {
			t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
				r := cli(t, cp, append(tc.args, fixtureNowFlag)...).ok(t)
				checkGolden(t, tc.golden, r.stdout)
			})
		}
	})

	t.Run("json list parses back", func(t *testing.T) {
		r := cli(t, cp, "get", "-n", "golden-a", "-o", "json").ok(t)
		var list coordinationv1.LeaseList
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			t.Fatalf("%v\n%s", err, r.stdout)
		}
		if list.Kind != "LeaseList" || list.APIVersion != "coordination.k8s.io/v1" || len(list.Items) != 4 {
			t.Fatalf("got %s %s with %d items, want coordination.k8s.io/v1 LeaseList with 4", list.APIVersion, list.Kind, len(list.Items))
		}
		for _, l := range list.Items {
			if l.Kind != "Lease" || l.Namespace != "golden-a" || len(l.ManagedFields) != 0 {
				t.Errorf("item %s/%s: kind %q, managedFields %d", l.Namespace, l.Name, l.Kind, len(l.ManagedFields))
			}
		}
	})

	t.Run("yaml parses back", func(t *testing.T) {
		r := cli(t, cp, "get", "handoff", "-n", "golden-b", "-o", "yaml").ok(t)
		var l coordinationv1.Lease
		if err := yaml.UnmarshalStrict([]byte(r.stdout), &l); err != nil {
			t.Fatalf("%v\n%s", err, r.stdout)
		}
		s := lease.NewSnapshot(&l)
		if l.Kind != "Lease" || s.Record.Holder != "pod-c" || s.Token != 5000 || s.Record.PreferredHolder != "pod-d" || s.Record.Transitions != 1 {
			t.Fatalf("parsed %s %s/%s: %+v token %v", l.Kind, l.Namespace, l.Name, s.Record, s.Token)
		}
	})

	t.Run("selector filters", func(t *testing.T) {
		r := cli(t, cp, "get", "-n", "golden-a", "-l", "leasehold-test=golden", "-o", "name").ok(t)
		want := "lease.coordination.k8s.io/expired\nlease.coordination.k8s.io/held\nlease.coordination.k8s.io/released\n"
		if r.stdout != want {
			t.Fatalf("got:\n%swant:\n%s", r.stdout, want)
		}
		r = cli(t, cp, "get", "-n", "golden-a", "-l", "leasehold-test!=golden", "-o", "name").ok(t)
		if r.stdout != "lease.coordination.k8s.io/unlabelled\n" {
			t.Fatalf("got %q", r.stdout)
		}
		r = cli(t, cp, "get", "-n", "golden-a", "-l", "nothing=here").ok(t)
		if r.stdout != "" || !strings.Contains(r.stderr, `No leases found in namespace "golden-a".`) {
			t.Fatalf("stdout %q, stderr %q", r.stdout, r.stderr)
		}
	})

	t.Run("all namespaces", func(t *testing.T) {
		r := cli(t, cp, "get", "-A").ok(t)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if !strings.HasPrefix(lines[0], "NAMESPACE ") {
			t.Fatalf("header %q", lines[0])
		}
		seen := map[string]bool{}
		for _, l := range lines[1:] {
			seen[strings.Fields(l)[0]] = true
		}
		if !seen["golden-a"] || !seen["golden-b"] {
			t.Fatalf("namespaces %v in:\n%s", seen, r.stdout)
		}
	})

	t.Run("errors", func(t *testing.T) {
		cli(t, cp, "get", "nope", "-n", "golden-a").fails(t, ExitError, `lease "nope" not found in namespace "golden-a"`)
		cli(t, cp, "describe", "nope", "-n", "golden-b").fails(t, ExitError, `lease "nope" not found in namespace "golden-b"`)
		cli(t, cp, "get", "-o", "bogus").fails(t, ExitUsage, `unknown output format "bogus"`)
		cli(t, cp, "get", "held", "-A").fails(t, ExitUsage, "across all namespaces")
		cli(t, cp, "list", "held").fails(t, ExitUsage)
		cli(t, cp, "get", "x", "y").fails(t, ExitUsage)
		cli(t, cp, "get", "--now", "yesterday").fails(t, ExitUsage, "RFC 3339")
	})

	t.Run("forbidden names the verb", func(t *testing.T) {
		token, err := cp.ServiceAccountToken(t.Context(), "golden-a", "nobody", nil)
		if err != nil {
			t.Fatal(err)
		}
		kc := kubeconfigForToken(t, cp, token)
		cli(t, nil, "--kubeconfig", kc, "get", "held", "-n", "golden-a").fails(t, ExitError, `verb "get"`, `"golden-a"`)
		cli(t, nil, "--kubeconfig", kc, "get", "-n", "golden-a").fails(t, ExitError, `verb "list"`, `"golden-a"`)
		cli(t, nil, "--kubeconfig", kc, "get", "-A").fails(t, ExitError, `verb "list"`, "all namespaces")
		cli(t, nil, "--kubeconfig", kc, "release", "held", "-n", "golden-a", "--force").fails(t, ExitError, `verb "get"`)
	})
}

// kubeconfigForToken writes a copy of cp's kubeconfig that authenticates
// with token.
func kubeconfigForToken(t *testing.T, cp *testenv.ControlPlane, token string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Token = token
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestNoKubeconfig: without any cluster configuration the commands fail at
// once (watch does not retry forever) and say why.
func TestNoKubeconfig(t *testing.T) {
	for _, args := range [][]string{{"get"}, {"describe", "x"}, {"watch", "x"}, {"release", "x", "--force"}, {"handoff", "x", "--to", "b"}} {
		r := runBinary(t, nil, binary, args...)
		r.fails(t, ExitError)
		if !strings.Contains(r.stderr, "no cluster configured: set --kubeconfig or KUBECONFIG") {
			t.Errorf("%v: stderr does not explain the missing configuration:\n%s", args, r.stderr)
		}
	}
}

// TestHelpExamples: every command of this file set explains itself with
// examples.
func TestHelpExamples(t *testing.T) {
	for _, c := range []string{"get", "list", "describe", "watch", "release", "handoff"} {
		r := cli(t, nil, c, "--help").ok(t)
		if !strings.Contains(r.stdout, "Examples:\n  ") || !strings.Contains(r.stdout, "leasehold "+c) && c != "list" {
			t.Errorf("%s --help has no examples:\n%s", c, r.stdout)
		}
		if strings.Contains(r.stdout, "--now") {
			t.Errorf("%s --help shows the hidden --now flag", c)
		}
	}
	r := cli(t, nil, "get", "--help").ok(t)
	if !strings.Contains(r.stdout, "holder's clock with yours") {
		t.Errorf("get --help does not explain whose clock judges expiry:\n%s", r.stdout)
	}
}
