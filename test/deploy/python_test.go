package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/internal/testproc"
)

var fastFlags = []string{"--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "300ms", "--grace", "5s"}

// TestPythonExampleUnderRun runs examples/python/app.py as the child of
// `leasehold run` in two replicas: only one works at a time, and when the
// leader is stopped (SIGTERM) the app gets SIGTERM, stops, and only then the
// other replica's app starts, with a larger fencing token.
func TestPythonExampleUnderRun(t *testing.T) {
	python := needPython(t)
	cp := testenv.Start(t)
	bin := buildLeasehold(t)
	app := filepath.Join(repoRoot(t), "examples", "python", "app.py")
	log := filepath.Join(t.TempDir(), "work.log")
	env := []string{"WORK_LOG=" + log, "WORK_SECONDS=0.05"}

	procs := map[string]*testproc.Proc{}
	for _, id := range []string{"a", "b"} {
		args := append(append([]string{"--kubeconfig", cp.Kubeconfig, "run", "--lease", "py", "--identity", id}, fastFlags...), "--", python, app)
		procs[id] = start(t, env, bin, args...)
	}

	var first string
	eventually(t, 20*time.Second, "one app to start and work", func() bool {
		ls := readLog(t, log)
		if len(ls) > 0 {
			first = ls[0].id
		}
		return count(ls, first, "work") >= 5
	})
	second := map[string]string{"a": "b", "b": "a"}[first]
	if n := len(byID(readLog(t, log), second)); n != 0 {
		t.Fatalf("%s's app wrote %d lines while %s leads", second, n, first)
	}

	procs[first].Signal(syscall.SIGTERM)
	if code := procs[first].Wait(t); code != 0 {
		t.Errorf("leasehold %s exited %d after SIGTERM, want the app's status 0\n%s", first, code, procs[first].Stderr)
	}
	eventually(t, 20*time.Second, "the other app to take over", func() bool {
		return count(readLog(t, log), second, "work") >= 3
	})
	procs[second].Signal(syscall.SIGTERM)
	if code := procs[second].Wait(t); code != 0 {
		t.Errorf("leasehold %s exited %d after SIGTERM\n%s", second, code, procs[second].Stderr)
	}

	ls := readLog(t, log)
	a, b := byID(ls, first), byID(ls, second)
	if a[0].what != "start" || a[len(a)-1].what != "stop" || b[0].what != "start" || b[len(b)-1].what != "stop" {
		t.Errorf("each term should run from start to stop:\n%s", dump(ls))
	}
	if last, next := a[len(a)-1], b[0]; last.ns >= next.ns {
		t.Errorf("overlap: %s's app stopped at %d, %s's started at %d\n%s", first, last.ns, second, next.ns, dump(ls))
	} else {
		t.Logf("handoff: %s's app stopped, %s's started %v later", first, second, time.Duration(next.ns-last.ns))
	}
	if a[0].token <= 0 || b[0].token <= a[0].token {
		t.Errorf("tokens %d then %d, want positive and growing", a[0].token, b[0].token)
	}
}

// TestPythonExampleWithSidecar runs app.py next to `leasehold run --http`
// sidecars (whose child is `leasehold watch`, as in deploy/sidecar), in two
// replicas: the app of the leading replica works, the other waits; when the
// leader's sidecar is stopped, the other app takes over. The apps follow
// the sidecars' /leader/watch streams (a push at the end of a term); this
// checks who works and the tokens, not the latency.
func TestPythonExampleWithSidecar(t *testing.T) {
	python := needPython(t)
	cp := testenv.Start(t)
	bin := buildLeasehold(t)
	app := filepath.Join(repoRoot(t), "examples", "python", "app.py")
	log := filepath.Join(t.TempDir(), "work.log")

	sidecars := map[string]*testproc.Proc{}
	apps := map[string]*testproc.Proc{}
	for _, id := range []string{"a", "b"} {
		args := append(append([]string{"--kubeconfig", cp.Kubeconfig, "run", "--lease", "py-sidecar", "--identity", id, "--http", "127.0.0.1:0"}, fastFlags...),
			"--", bin, "--kubeconfig", cp.Kubeconfig, "watch", "py-sidecar")
		sidecars[id] = start(t, nil, bin, args...)
		addr := sidecars[id].HTTPAddr(t)
		apps[id] = start(t, []string{"WORK_LOG=" + log, "WORK_SECONDS=0.05", "RETRY_SECONDS=0.2", "POD_NAME=" + id,
			"LEASEHOLD_URL=http://" + addr + "/leader"}, python, app)
	}

	var first string
	eventually(t, 20*time.Second, "one app to lead and work", func() bool {
		ls := readLog(t, log)
		if len(ls) > 0 {
			first = ls[0].id
		}
		return count(ls, first, "work") >= 5
	})
	second := map[string]string{"a": "b", "b": "a"}[first]
	if n := len(byID(readLog(t, log), second)); n != 0 {
		t.Fatalf("%s's app wrote %d lines while %s leads:\n%s", second, n, first, dump(readLog(t, log)))
	}

	sidecars[first].Signal(syscall.SIGTERM)
	sidecars[first].Wait(t)
	eventually(t, 20*time.Second, "the other app to take over and the first to stop", func() bool {
		ls := readLog(t, log)
		return count(ls, second, "work") >= 3 && count(ls, first, "stop") == 1
	})
	ls := readLog(t, log)
	a, b := byID(ls, first), byID(ls, second)
	if b[0].what != "start" || b[0].token <= a[0].token {
		t.Errorf("%s's term should start with a token above %d:\n%s", second, a[0].token, dump(ls))
	}
	for id, p := range apps {
		p.Signal(syscall.SIGTERM)
		if code := p.Wait(t); code != 0 {
			t.Errorf("app %s exited %d after SIGTERM\n%s", id, code, p.Stderr)
		}
	}
}

func needPython(t *testing.T) string {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found in PATH: the Python example cannot be tested here")
	}
	return python
}

// buildLeasehold builds cmd/leasehold into a temporary folder.
func buildLeasehold(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "leasehold")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/leasehold")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/leasehold: %v\n%s", err, out)
	}
	return bin
}

// line is one line of the work log: "<what> <identity> <token> <unix ns>".
type line struct {
	what, id  string
	token, ns int64
}

func readLog(t *testing.T, path string) []line {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ls []line
	for s := range strings.Lines(string(data)) {
		if !strings.HasSuffix(s, "\n") {
			break // being written
		}
		f := strings.Fields(s)
		if len(f) != 4 {
			t.Fatalf("work log line %q: want 4 fields", s)
		}
		tok, err1 := strconv.ParseInt(f[2], 10, 64)
		ns, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("work log line %q: bad token or time", s)
		}
		ls = append(ls, line{what: f[0], id: f[1], token: tok, ns: ns})
	}
	return ls
}

func byID(ls []line, id string) []line {
	var out []line
	for _, l := range ls {
		if l.id == id {
			out = append(out, l)
		}
	}
	return out
}

func count(ls []line, id, what string) int {
	n := 0
	for _, l := range byID(ls, id) {
		if l.what == what {
			n++
		}
	}
	return n
}

func dump(ls []line) string {
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, "  %s %s %d %d\n", l.what, l.id, l.token, l.ns)
	}
	return b.String()
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// start starts name with args and env added to the test's environment, its
// stdout and stderr in one buffer (Proc.Stderr). At the end of the test it is
// killed and waited for.
func start(t *testing.T, env []string, name string, args ...string) *testproc.Proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	return testproc.StartCombined(t, cmd)
}
