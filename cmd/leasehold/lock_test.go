package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/lease"
)

// holds runs until SIGTERM (then exits 6), after printing its environment
// and "ready".
const holds = `echo "token=$LEASEHOLD_TOKEN lease=$LEASEHOLD_LEASE permit=$LEASEHOLD_PERMIT id=$LEASEHOLD_IDENTITY"; ` +
	`trap 'echo got TERM; exit 6' TERM; echo ready; while :; do sleep 0.1; done`

var envLine = regexp.MustCompile(`token=(\d+) lease=(\S+) permit=(\d+) id=(\S+)`)

// env parses the environment line printed by holds.
func holdsEnv(t *testing.T, out string) (token uint64, leaseRef string, permit int, id string) {
	t.Helper()
	m := envLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no environment line in %q", out)
	}
	token, _ = strconv.ParseUint(m[1], 10, 64)
	permit, _ = strconv.Atoi(m[3])
	return token, m[2], permit, m[4]
}

func TestLock(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	t.Run("exclusion", func(t *testing.T) {
		t.Parallel()
		a := startCLI(t, cp, "lock", "excl", "--identity", "holder-a", "--ttl", "2s", "--", "sh", "-c", holds)
		a.Stdout.WaitFor(t, "ready", 20*time.Second)
		token, ref, permit, id := holdsEnv(t, a.Stdout.String())
		if ref != "default/excl" || permit != 0 || id != "holder-a" || token != annotationToken(t, cs, "excl") {
			t.Errorf("environment %q: want lease default/excl, permit 0, identity holder-a, the Lease's token %d",
				a.Stdout, annotationToken(t, cs, "excl"))
		}

		r := cli(t, cp, "lock", "excl", "--wait=false", "--", "true")
		if r.code != ExitNotAcquired || !strings.Contains(r.stderr, `"holder-a"`) {
			t.Errorf("--wait=false: exit %d, stderr %q; want %d naming holder-a", r.code, r.stderr, ExitNotAcquired)
		}
		start := time.Now()
		r = cli(t, cp, "lock", "excl", "--timeout", "1s", "--", "true")
		if r.code != ExitNotAcquired || !strings.Contains(r.stderr, "--timeout 1s") || !strings.Contains(r.stderr, `"holder-a"`) {
			t.Errorf("--timeout 1s: exit %d, stderr %q; want %d, the timeout and the holder", r.code, r.stderr, ExitNotAcquired)
		}
		if d := time.Since(start); d < time.Second {
			t.Errorf("--timeout 1s gave up after %v", d)
		}

		// A waiter takes the lock when a's command ends; a exits with its
		// command's status and releases, so the waiter gets it at once.
		w := startCLI(t, cp, "lock", "excl", "--identity", "waiter-w", "--", "sh", "-c", `echo "token=$LEASEHOLD_TOKEN"; exit 4`)
		w.Stderr.WaitFor(t, "waiting for lock default/excl: 0 waiter(s) ahead in the queue", 20*time.Second)
		// describe shows the queue, and the waiter first in it.
		r = cli(t, cp, "describe", "excl")
		if !strings.Contains(r.stdout, "1 waiter(s), served in this order:") || !strings.Contains(r.stdout, "1. waiter-w (entry excl-q-") {
			t.Errorf("describe while waiter-w waits lacks the queue:\n%s", r.stdout)
		}
		a.Signal(syscall.SIGTERM)
		if code := a.Wait(t); code != 6 || !strings.Contains(a.Stdout.String(), "got TERM") {
			t.Errorf("a exited %d after SIGTERM, stdout %q; want its command's 6 after SIGTERM", code, a.Stdout)
		}
		if code := w.Wait(t); code != 4 {
			t.Errorf("waiter exited %d, want its command's 4\n%s", code, w.Stderr)
		}
		if got, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(w.Stdout.String(), "token=")), 10, 64); err != nil || got <= token {
			t.Errorf("waiter's token %q not above %d (%v)", w.Stdout, token, err)
		}
		if h := leaseHolder(t, cs, "excl"); h != "" {
			t.Errorf("holderIdentity %q after both exited, want \"\"", h)
		}
		r = cli(t, cp, "lock", "excl", "--wait=false", "--", "sh", "-c", "exit 0")
		if r.code != 0 {
			t.Errorf("after release, --wait=false: exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("lost", func(t *testing.T) {
		t.Parallel()
		p := startCLI(t, cp, "lock", "lost", "--ttl", "2s", "--", "sh", "-c", holds)
		p.Stdout.WaitFor(t, "ready", 20*time.Second)
		stealLease(t, cs, "lost", "thief", 30)
		if code := p.Wait(t); code != ExitLost {
			t.Errorf("exit %d, want ExitLost (%d)\n%s", code, ExitLost, p.Stderr)
		}
		if !strings.Contains(p.Stdout.String(), "got TERM") || !strings.Contains(p.Stderr.String(), "lost") {
			t.Errorf("want the command stopped with SIGTERM and a message; stdout %q stderr %q", p.Stdout, p.Stderr)
		}
	})
	t.Run("semaphore", func(t *testing.T) {
		t.Parallel()
		permits := map[int]bool{}
		for _, id := range []string{"s1", "s2"} {
			p := startCLI(t, cp, "lock", "sem", "--permits", "2", "--identity", id, "--ttl", "2s", "--", "sh", "-c", holds)
			p.Stdout.WaitFor(t, "ready", 20*time.Second)
			_, ref, permit, _ := holdsEnv(t, p.Stdout.String())
			if want := "default/sem-" + strconv.Itoa(permit); ref != want {
				t.Errorf("LEASEHOLD_LEASE %q for permit %d, want %q", ref, permit, want)
			}
			permits[permit] = true
		}
		if len(permits) != 2 {
			t.Errorf("permits held: %v, want 0 and 1", permits)
		}
		r := cli(t, cp, "lock", "sem", "--permits", "2", "--wait=false", "--", "true")
		if r.code != ExitNotAcquired || !strings.Contains(r.stderr, `"s1"`) || !strings.Contains(r.stderr, `"s2"`) {
			t.Errorf("third holder: exit %d, stderr %q; want %d naming s1 and s2", r.code, r.stderr, ExitNotAcquired)
		}
	})
	t.Run("usage", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			args []string
			msg  string
		}{
			{[]string{"lock", "x"}, `"--"`},
			{[]string{"lock", "--", "true"}, "want 1 argument"},
			{[]string{"lock", "x", "y", "--", "true"}, "want 1 argument"},
			{[]string{"lock", "x", "--ttl", "1500ms", "--", "true"}, "whole number of seconds"},
			{[]string{"lock", "x", "--permits", "0", "--", "true"}, "--permits 0"},
		} {
			r := cli(t, cp, tc.args...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, tc.msg) {
				t.Errorf("leasehold %q: exit %d, stderr %q; want %d and %q", tc.args, r.code, r.stderr, ExitUsage, tc.msg)
			}
		}
	})
}

// holder returns the Lease's holderIdentity read with client-go.
func leaseHolder(t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	l, err := cs.CoordinationV1().Leases("default").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// annotationToken returns the token recorded on the Lease.
func annotationToken(t *testing.T, cs kubernetes.Interface, name string) uint64 {
	t.Helper()
	l, err := cs.CoordinationV1().Leases("default").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := l.Annotations[lease.TokenAnnotation]
	tok, rest, _ := strings.Cut(v, "/")
	tr, holder, _ := strings.Cut(rest, "/")
	if l.Spec.LeaseTransitions == nil || tr != strconv.Itoa(int(*l.Spec.LeaseTransitions)) || holder != *l.Spec.HolderIdentity {
		t.Fatalf("annotation %s=%q does not match leaseTransitions %v and holder %q", lease.TokenAnnotation, v, l.Spec.LeaseTransitions, *l.Spec.HolderIdentity)
	}
	n, err := strconv.ParseUint(tok, 10, 64)
	if err != nil {
		t.Fatalf("annotation %s=%q: %v", lease.TokenAnnotation, v, err)
	}
	return n
}

// stealLease writes another holder into the Lease, as a client-go candidate
// that took it over would, for the given lease duration.
func stealLease(t *testing.T, cs kubernetes.Interface, name, thief string, seconds int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		l, err := cs.CoordinationV1().Leases("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := metav1.NewMicroTime(time.Now())
		transitions := int32(1)
		if l.Spec.LeaseTransitions != nil {
			transitions = *l.Spec.LeaseTransitions + 1
		}
		l.Spec = coordinationv1.LeaseSpec{HolderIdentity: &thief, LeaseDurationSeconds: &seconds,
			AcquireTime: &now, RenewTime: &now, LeaseTransitions: &transitions}
		_, err = cs.CoordinationV1().Leases("default").Update(ctx, l, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
}

// readOnlyRules allow reading and watching Leases, but not writing them.
func readOnlyRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{{
		APIGroups: []string{"coordination.k8s.io"},
		Resources: []string{"leases"},
		Verbs:     []string{"get", "list", "watch"},
	}}
}
