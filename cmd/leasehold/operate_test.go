package main

import (
	"bufio"
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/internal/testproc"
	"github.com/leasehold/leasehold/lease"
)

// createHeldLease creates default/name held by holder since now.
func createHeldLease(t *testing.T, cs kubernetes.Interface, name, holder string, transitions int32) *coordinationv1.Lease {
	t.Helper()
	now := time.Now()
	rec := lease.Record{Holder: holder, LeaseDuration: 15 * time.Second, AcquireTime: now, RenewTime: now, Transitions: transitions}
	l, err := cs.CoordinationV1().Leases("default").Create(t.Context(),
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: rec.ToSpec()},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// changeLease applies change to the record of default/name (as a holder's
// write would) and updates the Lease.
func changeLease(t *testing.T, cs kubernetes.Interface, name string, change func(*lease.Record)) {
	t.Helper()
	l, err := cs.CoordinationV1().Leases("default").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec := lease.FromSpec(l.Spec)
	change(&rec)
	l.Spec = rec.ToSpec()
	if _, err := cs.CoordinationV1().Leases("default").Update(t.Context(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// lineProc is the binary running in the background, its stdout read line
// by line.
type lineProc struct {
	cmd   *exec.Cmd
	lines chan string
	wg    sync.WaitGroup
	errb  testproc.Buffer
}

func startLines(t *testing.T, cp *testenv.ControlPlane, args ...string) *lineProc {
	t.Helper()
	p := &lineProc{lines: make(chan string, 100)}
	p.cmd = exec.Command(binary, append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
	p.cmd.Stderr = &p.errb
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.wg.Go(func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	})
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		p.wait()
	})
	return p
}

// expect returns the first line that contains want, failing after timeout.
func (p *lineProc) expect(t *testing.T, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("output ended without %q; lines:\n%s\nstderr:\n%s", want, strings.Join(seen, "\n"), p.errb.String())
			}
			if strings.Contains(l, want) {
				return l
			}
			seen = append(seen, l)
		case <-deadline:
			t.Fatalf("no line with %q after %v; lines:\n%s\nstderr:\n%s", want, timeout, strings.Join(seen, "\n"), p.errb.String())
		}
	}
}

// wait reads the rest of the output and waits for the process; it returns
// the exit code.
func (p *lineProc) wait() int {
	for range p.lines {
	}
	p.wg.Wait()
	err := p.cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

var stampRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  `)

func TestWatch(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	createHeldLease(t, cs, "x", "a", 1)

	p := startLines(t, cp, "watch", "x", "--renewals")
	first := p.expect(t, "lease default/x: held by a (token unknown, transitions 1, lease duration 15s)", 30*time.Second)
	if !stampRE.MatchString(first) {
		t.Errorf("line %q does not start with a timestamp", first)
	}
	changeLease(t, cs, "x", func(r *lease.Record) { r.RenewTime = time.Now() })
	p.expect(t, "renewed by a", 10*time.Second)
	changeLease(t, cs, "x", func(r *lease.Record) {
		now := time.Now()
		r.Holder, r.AcquireTime, r.RenewTime, r.Transitions = "b", now, now, r.Transitions+1
	})
	p.expect(t, "b took over from a (token unknown, transitions 2)", 10*time.Second)
	changeLease(t, cs, "x", func(r *lease.Record) { *r = r.Released(time.Now()) })
	p.expect(t, "released by b", 10*time.Second)
	changeLease(t, cs, "x", func(r *lease.Record) {
		now := time.Now()
		r.Holder, r.AcquireTime, r.RenewTime, r.Transitions, r.LeaseDuration = "c", now, now, r.Transitions+1, time.Second
	})
	p.expect(t, "acquired by c (token unknown, transitions 3)", 10*time.Second)
	// c never renews: after its one-second duration the watcher says so.
	p.expect(t, "expired in this watcher's view: c has not renewed for 1s", 10*time.Second)

	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("watch exited %d after SIGINT, want 0; stderr:\n%s", code, p.errb.String())
	}
}

// TestWatchInProcess runs watch through Execute, so that -race covers the
// command's own goroutines (the binary is built without -race).
func TestWatchInProcess(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	createHeldLease(t, cs, "x", "a", 1)

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var out, errb testproc.Buffer
	code := -1
	wg.Go(func() {
		code = Execute(ctx, []string{"--kubeconfig", cp.Kubeconfig, "watch", "x", "--renewals"}, IO{Out: &out, Err: &errb})
	})
	out.WaitFor(t, "held by a", 20*time.Second)
	changeLease(t, cs, "x", func(r *lease.Record) { r.Holder, r.Transitions = "b", r.Transitions+1 })
	out.WaitFor(t, "b took over from a", 20*time.Second)
	cancel()
	wg.Wait()
	if code != 0 {
		t.Fatalf("watch returned %d after its context ended, want 0; stderr:\n%s", code, errb.String())
	}
}

func TestWatchMissingLease(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	p := startLines(t, cp, "watch", "later")
	p.expect(t, "lease default/later does not exist (yet)", 30*time.Second)
	createHeldLease(t, cs, "later", "a", 0)
	p.expect(t, "created: held by a", 10*time.Second)
	if err := cs.CoordinationV1().Leases("default").Delete(t.Context(), "later", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	p.expect(t, "deleted", 10*time.Second)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("watch exited %d after SIGTERM, want 0; stderr:\n%s", code, p.errb.String())
	}
}

func TestRelease(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	createHeldLease(t, cs, "x", "other", 4)
	createHeldLease(t, cs, "mine", "me", 2)

	cli(t, cp, "release", "x", "--identity", "me").fails(t, ExitError, `held by "other", not by "me"`, "--force")
	if got := readRecord(t, cs, "x"); got.Holder != "other" {
		t.Fatalf("refused release changed the holder to %q", got.Holder)
	}

	r := cli(t, cp, "release", "x", "--force").ok(t)
	if !strings.Contains(r.stdout, "force-released lease default/x (held by other, acquired ") {
		t.Errorf("stdout %q", r.stdout)
	}
	got := readRecord(t, cs, "x")
	if got.Holder != "" || got.LeaseDuration != time.Second || got.Transitions != 4 {
		t.Fatalf("after release --force: %+v, want holder \"\", duration 1s, transitions 4", got)
	}
	r = cli(t, cp, "release", "x", "--force").ok(t)
	if !strings.Contains(r.stdout, "not held") {
		t.Errorf("releasing a released lease: %q", r.stdout)
	}

	r = cli(t, cp, "release", "mine", "--identity", "me").ok(t)
	if !strings.Contains(r.stdout, "released lease default/mine (held by me, acquired ") {
		t.Errorf("stdout %q", r.stdout)
	}
	if got := readRecord(t, cs, "mine"); got.Holder != "" || got.Transitions != 2 {
		t.Fatalf("after release: %+v", got)
	}
	cli(t, cp, "release", "absent", "--force").fails(t, ExitError, `lease "absent" not found in namespace "default"`)
}

func readRecord(t *testing.T, cs kubernetes.Interface, name string) lease.Record {
	t.Helper()
	l, err := cs.CoordinationV1().Leases("default").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return lease.NewSnapshot(l).Record
}

func TestHandoff(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	leading := make(chan string, 10)
	campaign := func(id string) {
		e, err := election.New(election.Config{
			Leases: cs.CoordinationV1(), Namespace: "default", Name: "x", Identity: id,
			LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			_ = e.Run(ctx, func(ctx context.Context) error {
				leading <- id
				<-ctx.Done()
				return nil
			})
		})
	}
	campaign("a")
	if got := nextLeader(t, leading); got != "a" {
		t.Fatalf("%s leads, want a", got)
	}
	campaign("b")

	r := cli(t, cp, "handoff", "x", "--to", "b").ok(t)
	if !regexp.MustCompile(`^handed lease default/x from a to b in \d+(\.\d+)?(ms|s)\n$`).MatchString(r.stdout) {
		t.Errorf("stdout %q", r.stdout)
	}
	if got := nextLeader(t, leading); got != "b" {
		t.Fatalf("%s leads after handoff, want b", got)
	}
	r = cli(t, cp, "handoff", "x", "--to", "b").ok(t)
	if r.stdout != "b already holds lease default/x\n" {
		t.Errorf("stdout %q", r.stdout)
	}

	// Nobody called c runs (a typo): b stops its work but keeps the lease
	// and offers it; nobody takes it, so b resumes within its handoff
	// timeout (2 retry periods) and a never leads. The command reports the
	// lapse. In process, so that -race covers the command's watch.
	before, err := cs.CoordinationV1().Leases("default").Get(ctx, "x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out, errb testproc.Buffer
	code := Execute(ctx, []string{"--kubeconfig", cp.Kubeconfig, "handoff", "x", "--to", "c", "--wait", "20s"}, IO{Out: &out, Err: &errb})
	if code != ExitError || !strings.Contains(errb.String(), "b acquired it again and the request lapsed") {
		t.Errorf("handoff to a candidate that does not run: exit %d, stderr %q; want b to resume", code, errb.String())
	}
	if got := nextLeader(t, leading); got != "b" {
		t.Fatalf("%s leads after a handoff to nobody, want b again", got)
	}
	after, err := cs.CoordinationV1().Leases("default").Get(ctx, "x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := *after.Spec.HolderIdentity; h != "b" || *after.Spec.LeaseTransitions != *before.Spec.LeaseTransitions+1 {
		t.Errorf("after the lapsed handoff: holder %q transitions %d, want b retaking it once (from %d)", h, *after.Spec.LeaseTransitions, *before.Spec.LeaseTransitions)
	}
	cli(t, cp, "handoff", "x").fails(t, ExitUsage, `"to"`)
	cli(t, cp, "handoff", "absent", "--to", "b").fails(t, ExitError, `lease "absent" not found in namespace "default"`)
}

func nextLeader(t *testing.T, leading <-chan string) string {
	t.Helper()
	select {
	case id := <-leading:
		return id
	case <-time.After(30 * time.Second):
		t.Fatal("nobody leads after 30s")
		return ""
	}
}
