package main

import (
	"errors"
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

// output is a child's stdout and stderr: a file, as leasehold's own
// stdout is in production, so that exec does not copy through a pipe.
type childOutput struct{ f *os.File }

func (o childOutput) String() string {
	b, _ := os.ReadFile(o.f.Name())
	return string(b)
}

// waitFor waits until the output contains sub, or fails the test.
func (o childOutput) waitFor(t *testing.T, sub string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(o.String(), sub) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v; have:\n%s", sub, timeout, o.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startTestChild starts sh -c script, killed and reaped at the end of the test.
func startTestChild(t *testing.T, script string, env ...string) (*child, childOutput) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	c, err := startChild(childSpec{argv: []string{"sh", "-c", script}, env: env, io: IO{Out: f, Err: f}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(0) })
	return c, childOutput{f}
}

func TestChildExitStatus(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		want         int
	}{
		{"success", "exit 0", 0},
		{"exit 3", "exit 3", 3},
		{"killed by SIGKILL", "kill -9 $$", 128 + 9},
		{"killed by SIGTERM", "kill -15 $$", 128 + 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := startTestChild(t, tc.script)
			select {
			case <-c.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the child did not exit")
			}
			if got := c.Code(); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
}

func TestChildStopTermThenKill(t *testing.T) {
	t.Run("exits on SIGTERM", func(t *testing.T) {
		c, out := startTestChild(t, `trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.05; done`)
		out.waitFor(t, "ready", 10*time.Second)
		start := time.Now()
		if got := c.Stop(10 * time.Second); got != 5 {
			t.Errorf("status %d, want 5 (the trap's)", got)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Stop took %v: it waited for the grace period", d)
		}
		if !strings.Contains(out.String(), "got TERM") {
			t.Errorf("the child did not get SIGTERM; output:\n%s", out)
		}
	})
	t.Run("ignores SIGTERM", func(t *testing.T) {
		// The sleep started by the shell ignores SIGTERM too (inherited), so
		// only SIGKILL after the grace period ends them.
		c, out := startTestChild(t, `trap '' TERM; echo ready; sleep 30`)
		out.waitFor(t, "ready", 10*time.Second)
		const grace = 300 * time.Millisecond
		start := time.Now()
		got := c.Stop(grace)
		d := time.Since(start)
		if got != 128+int(syscall.SIGKILL) {
			t.Errorf("status %d, want %d (SIGKILL)", got, 128+int(syscall.SIGKILL))
		}
		if d < grace || d > grace+5*time.Second {
			t.Errorf("Stop took %v, want the grace period %v and little more", d, grace)
		}
	})
	t.Run("whole process group", func(t *testing.T) {
		// A background grandchild that ignores SIGTERM is in the child's
		// process group; when the child exits on SIGTERM, Stop does not wait
		// for the grace period but still leaves nothing running.
		c, out := startTestChild(t, `sh -c 'trap "" TERM; exec sleep 30' & echo "bg $!"; trap 'exit 0' TERM; wait`)
		out.waitFor(t, "bg ", 10*time.Second)
		var pid int
		if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(out.String(), "bg ")), &pid); err != nil {
			t.Fatalf("parse pid from %q: %v", out.String(), err)
		}
		waitIgnores(t, pid, syscall.SIGTERM)
		start := time.Now()
		if got := c.Stop(10 * time.Second); got != 0 {
			t.Errorf("status %d, want 0", got)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Stop took %v: it waited for the grace period", d)
		}
		deadline := time.Now().Add(5 * time.Second)
		for testproc.Running(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("grandchild %d still runs after Stop", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("after exit", func(t *testing.T) {
		c, _ := startTestChild(t, "exit 4")
		<-c.Done()
		if got := c.Stop(time.Second); got != 4 {
			t.Errorf("status %d, want 4", got)
		}
	})
}

// waitIgnores waits until process pid ignores sig (its trap is set), or
// fails the test.
func waitIgnores(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ignores(pid, sig) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d does not ignore %v after 10s", pid, sig)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ignores reports whether process pid ignores sig, from the SigIgn mask in
// /proc/PID/status.
func ignores(pid int, sig syscall.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if mask, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return err == nil && m&(1<<(sig-1)) != 0
		}
	}
	return false
}

func TestChildEnvironment(t *testing.T) {
	c, out := startTestChild(t, `echo "token=$LEASEHOLD_TOKEN path=${PATH:+set}"`, "LEASEHOLD_TOKEN=42")
	<-c.Done()
	if got := out.String(); !strings.Contains(got, "token=42 path=set") {
		t.Errorf("output %q: want the added variable and the inherited environment", got)
	}
}

func TestLookCommand(t *testing.T) {
	if err := lookCommand([]string{"sh"}); err != nil {
		t.Errorf("sh: %v", err)
	}
	err := lookCommand([]string{"leasehold-no-such-command"})
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitNotFound {
		t.Errorf("missing command: %v, want exit code %d", err, exitNotFound)
	}
}

// startCLI starts the built binary with args against cp. At the end of the
// test it is killed (its command gets SIGKILL through the parent-death
// signal) and reaped.
func startCLI(t *testing.T, cp *testenv.ControlPlane, args ...string) *testproc.Proc {
	t.Helper()
	if cp != nil {
		args = append([]string{"--kubeconfig", cp.Kubeconfig}, args...)
	}
	return testproc.Start(t, exec.Command(binary, args...))
}
