package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"
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
	// pod-f took it with token 6000; then holderIdentity was edited to
	// intruder (kubectl apply): no token, and the times are pod-f's.
	{ns: "golden-b", name: "foreign", holder: "intruder", duration: 15, acquired: 10 * time.Minute, renewed: 3 * time.Second, transitions: 2, token: "6000/2/pod-f"},
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

// maskAge replaces the AGE column of a table with <age>, realigned: the
// fixture's age depends on when it was created, not on --now alone.
func maskAge(table string) string {
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) == 0 || !strings.Contains(lines[0], "   AGE") {
		return table
	}
	// Columns start where the header has a word after three spaces.
	var starts []int
	for i := range lines[0] {
		if i == 0 || i >= 3 && lines[0][i] != ' ' && lines[0][i-3:i] == "   " {
			starts = append(starts, i)
		}
	}
	var b strings.Builder
	tw := printers.GetNewTabWriter(&b)
	for _, l := range lines {
		cells := make([]string, len(starts))
		for i, start := range starts {
			end := len(l)
			if i+1 < len(starts) && starts[i+1] < end {
				end = starts[i+1]
			}
			if start < len(l) {
				cells[i] = strings.TrimSpace(l[start:end])
			}
			if lines[0][start:min(start+4, len(lines[0]))] == "AGE " || strings.TrimSpace(lines[0][start:]) == "AGE" {
				if l != lines[0] {
					cells[i] = "<age>"
				}
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	_ = tw.Flush()
	return b.String()
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
			{"describe-foreign", []string{"describe", "foreign", "-n", "golden-b"}},
			{"get-labels", []string{"get", "-n", "golden-a", "--show-labels", "-L", "leasehold-test"}},
		} {
			t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
				r := cli(t, cp, append(tc.args, fixtureNowFlag)...).ok(t)
				checkGolden(t, tc.golden, maskAge(r.stdout))
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

	t.Run("an empty list has items [], not null", func(t *testing.T) {
		r := cli(t, cp, "get", "-n", "golden-a", "-l", "nothing=here", "-o", "json").ok(t)
		if !strings.Contains(r.stdout, `"items": []`) {
			t.Errorf("-o json:\n%s", r.stdout)
		}
		r = cli(t, cp, "get", "-n", "golden-a", "-l", "nothing=here", "-o", "yaml").ok(t)
		if !strings.Contains(r.stdout, "items: []\n") {
			t.Errorf("-o yaml:\n%s", r.stdout)
		}
	})

	t.Run("several names and lease/NAME", func(t *testing.T) {
		r := cli(t, cp, "get", "held", "lease/expired", "leases.coordination.k8s.io/released", "-n", "golden-a", "-o", "name").ok(t)
		want := "lease.coordination.k8s.io/held\nlease.coordination.k8s.io/expired\nlease.coordination.k8s.io/released\n"
		if r.stdout != want {
			t.Errorf("got:\n%swant:\n%s", r.stdout, want)
		}
		r = cli(t, cp, "get", "held", "lease/expired", "-n", "golden-a", "-o", "json").ok(t)
		var list coordinationv1.LeaseList
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Items) != 2 {
			t.Errorf("two names, -o json: %v\n%s", err, r.stdout)
		}
		// Those found are printed, those not found reported, exit 1.
		r = cli(t, cp, "get", "held", "nope", "-n", "golden-a", "-o", "name")
		r.fails(t, ExitError, `lease "nope" not found in namespace "golden-a"`)
		if r.stdout != "lease.coordination.k8s.io/held\n" {
			t.Errorf("stdout %q", r.stdout)
		}
		r = cli(t, cp, "describe", "lease/held", "released", "-n", "golden-a", fixtureNowFlag).ok(t)
		if !strings.Contains(r.stdout, "Name:             held\n") || !strings.Contains(r.stdout, "\n\nName:             released\n") {
			t.Errorf("describe of two Leases:\n%s", r.stdout)
		}
		cli(t, cp, "get", "pod/held", "-n", "golden-a").fails(t, ExitUsage, "only Leases")
		cli(t, cp, "get", "", "-n", "golden-a").fails(t, ExitUsage, "must not be empty")
		cli(t, cp, "get", "lease/", "-n", "golden-a").fails(t, ExitUsage, "must not be empty")
	})

	t.Run("jsonpath, go-template, custom-columns", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"get", "-n", "golden-a", "-l", "leasehold-test=golden", "-o", `jsonpath={range .items[*]}{.metadata.name}={.spec.holderIdentity}{"\n"}{end}`},
				"expired=pod-b\nheld=pod-a\nreleased=\n"},
			{[]string{"get", "held", "-n", "golden-a", "-o", "jsonpath={.spec.leaseTransitions}"}, "3"},
			{[]string{"get", "held", "-n", "golden-a", "-o", "go-template={{.spec.holderIdentity}}"}, "pod-a"},
			{[]string{"get", "held", "-n", "golden-a", "--template", "{{.metadata.name}}"}, "held"},
			{[]string{"get", "-n", "golden-a", "-l", "leasehold-test=golden", "-o", "custom-columns=NAME:.metadata.name,HOLDER:.spec.holderIdentity,TOKEN:.metadata.annotations.leasehold\\.io/token"},
				"NAME       HOLDER   TOKEN\nexpired    pod-b    <none>\nheld       pod-a    4242/3/pod-a\nreleased            <none>\n"}, // "" is a value; <none> is for no value, as kubectl
			{[]string{"get", "held", "-n", "golden-a", "--no-headers", "-o", "custom-columns=N:metadata.name,T:{.spec.leaseTransitions}"}, "held   3\n"},
		} {
			r := cli(t, cp, tc.args...).ok(t)
			if r.stdout != tc.want {
				t.Errorf("%q:\ngot:\n%s\nwant:\n%s", tc.args, r.stdout, tc.want)
			}
		}
		cli(t, cp, "get", "-o", "custom-columns=").fails(t, ExitUsage, "no columns given")
		cli(t, cp, "get", "-o", "custom-columns=NAME").fails(t, ExitUsage, "HEADER:JSONPATH")
		cli(t, cp, "get", "-o", "jsonpath={.bad").fails(t, ExitUsage)
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
		cli(t, cp, "get", "x", "y", "-w").fails(t, ExitUsage, "-w watches one Lease")
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
