package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/internal/testproc"
)

// TestSuspendedHolder stops the holder with SIGTSTP (Ctrl-Z) until another
// takes over, then continues it: its COMMAND must have stopped with it, and
// must be killed, not continued, since its term has ended. The workload logs
// its beats, so that any run of the old COMMAND while the new holder works
// shows as an overlap of terms.
func TestSuspendedHolder(t *testing.T) {
	cp := testenv.Start(t)
	for _, tc := range []struct {
		name string
		args func(id string) []string
		code int // of the suspended holder once continued; -1: it keeps running
	}{
		{"run", func(id string) []string {
			return append([]string{"run", "--lease", "suspended-run", "--identity", id}, fastTimings...)
		}, -1},
		{"lock", func(id string) []string {
			return []string{"lock", "suspended-lock", "--identity", id, "--ttl", "2s", "--grace", "2s"}
		}, ExitLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			log := filepath.Join(t.TempDir(), "log")
			procs := map[string]*testproc.Proc{}
			for _, id := range []string{"a", "b"} {
				procs[id] = startCLI(t, cp, append(append(tc.args(id), "--"), replicaWorkload(log)...)...)
			}
			first := waitTerm(t, log, nil)
			eventually(t, 10*time.Second, "the workload to run for 300ms", func() bool {
				terms := readTerms(t, log)
				return time.Duration(terms[0].end-terms[0].start) >= 300*time.Millisecond
			})
			p := procs[first.id]
			workload := childPids(t, p.Pid())
			if len(workload) != 1 {
				t.Fatalf("%s's leasehold has children %v, want its workload alone", first.id, workload)
			}
			p.Signal(syscall.SIGTSTP)
			waitStopped(t, p.Pid())
			waitStopped(t, workload[0])
			stoppedAt := time.Now().UnixNano()

			second := waitTerm(t, log, []string{first.id})
			p.Signal(syscall.SIGCONT)
			p.Stderr.WaitFor(t, "killed sh", 10*time.Second)
			eventually(t, 10*time.Second, "the old workload to be gone", func() bool { return !testproc.Running(workload[0]) })
			if tc.code >= 0 {
				if code := p.Wait(t); code != tc.code {
					t.Errorf("%s exited %d after SIGCONT, want %d\n%s", first.id, code, tc.code, p.Stderr)
				}
			}
			time.Sleep(300 * time.Millisecond) // room for a beat, had the old workload been continued
			checkTerms(t, log, []workTerm{first, second})
			if last := readTerms(t, log)[0].end; last > stoppedAt {
				t.Errorf("%s's workload ran %v after it was stopped", first.id, time.Duration(last-stoppedAt))
			}
		})
	}
}

// childPids returns the processes whose parent is pid.
func childPids(t *testing.T, pid int) []int {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, field := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(field); err == nil {
				pids = append(pids, n)
			}
		}
	}
	return pids
}

// waitStopped waits until process pid is stopped, or fails the test.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("process %d to stop", pid), func() bool { return stopped(pid) })
}

// stopped reports whether process pid is stopped: in state T, or, when a
// SIGSTOP reached it in the middle of a vfork, waiting uninterruptibly (D)
// with the SIGSTOP pending, for a child that has stopped.
func stopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	var state string
	var pending uint64
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch k {
		case "State":
			state = v
		case "SigPnd", "ShdPnd":
			m, _ := strconv.ParseUint(v, 16, 64)
			pending |= m
		}
	}
	return strings.HasPrefix(state, "T") || strings.HasPrefix(state, "D") && pending&(1<<(syscall.SIGSTOP-1)) != 0
}

// TestSupervisor drives the relay in-process (covered by -race): signals
// passed on, COMMAND stopped before leasehold, continued while its term
// holds, killed once it does not.
func TestSupervisor(t *testing.T) {
	c, out := startTestChild(t, `trap 'echo got USR1' USR1; echo ready; while :; do sleep 0.05; done`)
	out.waitFor(t, "ready", 10*time.Second)
	var msgs testproc.Buffer
	s := startSupervisor(nil, &msgs)
	defer s.close()
	var selfStops int
	s.self = func() { selfStops++ } // the test process must not stop
	holds := true
	s.attach(c, "sh", func() bool { return holds })

	s.handle(syscall.SIGUSR1)
	out.waitFor(t, "got USR1", 10*time.Second)

	s.handle(syscall.SIGTSTP)
	if selfStops != 1 {
		t.Fatalf("leasehold stopped itself %d times on SIGTSTP, want 1", selfStops)
	}
	waitStopped(t, c.Pid())
	s.handle(syscall.SIGCONT)
	eventually(t, 10*time.Second, "the command to be continued", func() bool { return !stopped(c.Pid()) })
	if s.killedOnResume(c) {
		t.Fatal("killed although the term holds")
	}

	s.handle(syscall.SIGTSTP)
	waitStopped(t, c.Pid())
	holds = false
	s.handle(syscall.SIGCONT)
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the command was not killed on SIGCONT after its term ended")
	}
	if code := c.Code(); code != 128+int(syscall.SIGKILL) || !s.killedOnResume(c) {
		t.Errorf("status %d, killedOnResume %v; want SIGKILL and true", code, s.killedOnResume(c))
	}
	if !strings.Contains(msgs.String(), "killed sh") {
		t.Errorf("no message about the kill: %q", msgs.String())
	}
	if strings.Contains(out.String(), "got USR1\ngot USR1") {
		t.Errorf("SIGUSR1 delivered twice: %q", out)
	}
	s.detach(c)
	s.handle(syscall.SIGUSR1) // no command attached: dropped
}

// TestHangupAndForwardedSignals: SIGUSR1, SIGUSR2 and SIGWINCH reach
// COMMAND; SIGHUP (a closed terminal) ends leasehold as SIGTERM does:
// COMMAND gets SIGTERM, the lease is released, and leasehold exits with
// COMMAND's status.
func TestHangupAndForwardedSignals(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	const script = `trap 'echo got USR1' USR1; trap 'echo got USR2' USR2; trap 'echo got WINCH' WINCH; ` +
		`trap 'echo got TERM; exit 7' TERM; echo running; while :; do sleep 0.1; done`
	for _, tc := range []struct{ name, lease string }{{"run", "hangup-run"}, {"lock", "hangup-lock"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"lock", tc.lease, "--ttl", "2s", "--grace", "2s"}
			if tc.name == "run" {
				args = append([]string{"run", "--lease", tc.lease}, fastTimings...)
			}
			p := startCLI(t, cp, append(append(args, "--"), "sh", "-c", script)...)
			p.Stdout.WaitFor(t, "running", 20*time.Second)
			for _, s := range []struct {
				sig  syscall.Signal
				name string
			}{{syscall.SIGUSR1, "USR1"}, {syscall.SIGUSR2, "USR2"}, {syscall.SIGWINCH, "WINCH"}} {
				p.Signal(s.sig)
				p.Stdout.WaitFor(t, "got "+s.name, 10*time.Second)
			}
			p.Signal(syscall.SIGHUP)
			if code := p.Wait(t); code != 7 {
				t.Errorf("exit %d after SIGHUP, want the command's 7\n%s", code, p.Stderr)
			}
			if !strings.Contains(p.Stdout.String(), "got TERM") {
				t.Errorf("the command did not get SIGTERM; stdout:\n%s", p.Stdout)
			}
			if h := leaseHolder(t, cs, tc.lease); h != "" {
				t.Errorf("holderIdentity %q after SIGHUP, want \"\" (released)", h)
			}
		})
	}
}
