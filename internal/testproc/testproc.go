// Package testproc runs a command in the background for a test: it captures
// the command's output, reports its exit status, and kills and reaps it when
// the test ends.
package testproc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts and the polling interval used by the waiting methods.
const (
	waitTimeout = 30 * time.Second // Proc.Wait
	addrTimeout = 20 * time.Second // Proc.HTTPAddr
	pollEvery   = 20 * time.Millisecond
	// waitDelay bounds how long Wait may block on the output pipes after the
	// process exited: a grandchild that outlives it can hold them open.
	waitDelay = 5 * time.Second
)

// Buffer is a bytes.Buffer that one writer and any number of readers may
// use at the same time. The zero value is an empty buffer.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns a copy of everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// WaitFor polls the buffer until it contains sub. If that takes longer than
// timeout, it fails the test with the buffer's content.
func (b *Buffer) WaitFor(t testing.TB, sub string, timeout time.Duration) {
	t.Helper()
	if !poll(timeout, func() bool { return strings.Contains(b.String(), sub) }) {
		t.Fatalf("no %q in the output within %v; have:\n%s", sub, timeout, b.String())
	}
}

// Proc is a command started by Start or StartCombined.
type Proc struct {
	// Stdout and Stderr hold what the command wrote to its standard output
	// and standard error. After StartCombined they are the same Buffer.
	Stdout, Stderr *Buffer

	cmd  *exec.Cmd
	what string        // what Stderr holds, for messages: "stderr" or "output"
	done chan struct{} // closed when cmd.Wait has returned and code is set
	code int
}

// Start starts cmd with its standard output and standard error each written
// to a new Buffer, and returns it running. Everything else about cmd (Env,
// Dir, SysProcAttr, ...) is the caller's. At the end of the test the process
// gets SIGKILL, is waited for, and, if the test failed, its standard error
// is logged.
func Start(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	return start(t, cmd, &Buffer{}, &Buffer{}, "stderr")
}

// StartCombined is Start with standard output and standard error written to
// one Buffer, in the order the command wrote them.
func StartCombined(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	out := &Buffer{}
	return start(t, cmd, out, out, "output")
}

func start(t testing.TB, cmd *exec.Cmd, stdout, stderr *Buffer, what string) *Proc {
	t.Helper()
	p := &Proc{Stdout: stdout, Stderr: stderr, cmd: cmd, what: what, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", cmd.Args, err)
	}
	go func() {
		_ = cmd.Wait()
		p.code = exitCode(cmd.ProcessState)
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("%s %q %s:\n%s", p.name(), cmd.Args[1:], p.what, p.Stderr)
		}
	})
	return p
}

// exitCode is the status a shell reports for a process: its exit status, or
// 128+N when signal N killed it; -1 when it is unknown.
func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode() // -1 for a nil ps
}

// name is the base name of the command's program, for messages.
func (p *Proc) name() string { return filepath.Base(p.cmd.Path) }

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process (not to its process group). It does
// nothing once the process has exited.
func (p *Proc) Signal(sig os.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// Wait waits for the process to exit and returns its status: the exit
// status, or 128+N when signal N killed it. If the process has not exited
// within 30s, Wait fails the test with the process's standard error (all its
// output after StartCombined).
func (p *Proc) Wait(t testing.TB) int {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.code
	case <-timer.C:
		t.Fatalf("%s did not exit within %v; %s:\n%s", p.name(), waitTimeout, p.what, p.Stderr)
		return -1
	}
}

var servingLine = regexp.MustCompile(`serving HTTP on (\S+)[^\n]*\n`)

// HTTPAddr waits for the line "serving HTTP on ADDR" that `leasehold
// --http` writes to standard error and returns ADDR. It waits for the whole
// line, and fails the test if no such line is written within 20s.
func (p *Proc) HTTPAddr(t testing.TB) string {
	t.Helper()
	var addr string
	found := poll(addrTimeout, func() bool {
		m := servingLine.FindStringSubmatch(p.Stderr.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	if !found {
		t.Fatalf("no HTTP address from %s within %v; %s:\n%s", p.name(), addrTimeout, p.what, p.Stderr)
	}
	return addr
}

// poll calls cond every 20ms until it returns true, and reports whether it
// did within timeout.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
	return true
}

// Running reports whether process pid runs: one that has exited but is not
// yet reaped by its parent (a zombie), or whose exit is under way, does
// not, though signals still reach its pid.
func Running(pid int) bool {
	f, err := Stat(pid)
	if err != nil {
		return false
	}
	switch f[0] {
	case "Z", "X", "x":
		return false
	}
	return true
}

// Stat returns the fields of /proc/<pid>/stat from the state on: f[0] is
// field 3 (the state), f[k] field k+3. The command name before them
// (field 2) is in parentheses and may hold spaces and ") ".
func Stat(pid int) (f []string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i >= 0 {
		f = strings.Fields(string(b[i+1:]))
	}
	if len(f) == 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return f, nil
}
