package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Exit codes for a command that could not be started, as POSIX shells and
// env(1) use them.
const (
	exitCannotExecute = 126 // found but not executable
	exitNotFound      = 127 // not found on PATH
)

// child is one supervised run of the user's command. The command gets a
// process group of its own, so that stopping it reaches everything it
// started, and it is killed (SIGKILL) if leasehold itself dies (Linux
// parent-death signal), so that a crashed leasehold leaves no workload
// running. Its methods are safe for concurrent use.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and been reaped
	code int           // exit status as a shell reports it; valid after done
}

// childSpec says what to run and with which environment and streams.
type childSpec struct {
	argv []string
	env  []string // added to leasehold's own environment
	io   IO
}

// lookCommand checks that argv can be started, before any lock or lease is
// taken for it.
func lookCommand(argv []string) error {
	if len(argv) == 0 {
		return errors.New("no command given")
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		return withCode(startCode(err), fmt.Errorf("command %q: %w", argv[0], err))
	}
	return nil
}

func startCode(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return exitNotFound
	}
	return exitCannotExecute
}

// startChild starts the command. The returned child's goroutine reaps it;
// the caller must wait for Done (Stop does).
func startChild(s childSpec) (*child, error) {
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout, cmd.Stderr = s.io.Out, s.io.Err
	if f, ok := s.io.In.(*os.File); ok {
		cmd.Stdin = f // a terminal or file is shared; anything else would need a copier that can block Wait
	}
	// Output that is not a file is copied by goroutines of exec; do not let
	// a grandchild that keeps the pipe open hold up the exit for long.
	cmd.WaitDelay = 2 * time.Second
	// Pdeathsig fires when the OS thread that forked exits; the Go runtime
	// ends threads only under LockOSThread, which leasehold does not use, so
	// in practice it fires when leasehold dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, withCode(startCode(err), fmt.Errorf("start %q: %w", s.argv[0], err))
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		c.code = exitCode(cmd.ProcessState, err)
		close(c.done)
	}()
	return c, nil
}

// exitCode maps how a process ended to the status a shell reports: its exit
// status, or 128+N when signal N killed it.
func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		if err != nil {
			return ExitError
		}
		return ExitOK
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitSignalBase + int(ws.Signal())
	}
	return ps.ExitCode()
}

// Pid returns the process id (also the process group id).
func (c *child) Pid() int { return c.cmd.Process.Pid }

// Done is closed when the command has exited.
func (c *child) Done() <-chan struct{} { return c.done }

// Code returns the exit status; call it after Done is closed.
func (c *child) Code() int {
	<-c.done
	return c.code
}

// exited reports whether the command has exited and been reaped.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// forward sends sig to the command's own process (not its group), unless
// it has exited: signals a supervisor passes on, which the command's
// children may not expect.
func (c *child) forward(sig syscall.Signal) {
	if !c.exited() {
		_ = c.cmd.Process.Signal(sig)
	}
}

// signal sends sig to the command's process group, unless it has exited
// (its group id could then belong to someone else).
func (c *child) signal(sig syscall.Signal) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, sig)
}

// Stop ends the command: SIGTERM to its process group, then SIGKILL if it
// has not exited after grace. Processes it left behind in its group get
// SIGKILL too, so nothing of it runs once Stop returns (barring processes that
// left the group). Stop returns the exit status and is safe to call after
// the command has exited by itself.
func (c *child) Stop(grace time.Duration) int {
	c.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.signal(syscall.SIGKILL)
		<-c.done
	}
	// The leader of the group is reaped, but the group lives on while any
	// member does; sweep it.
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	return c.code
}
