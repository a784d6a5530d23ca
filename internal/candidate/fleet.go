package candidate

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Fleet starts candidate processes and merges their events. Safe for
// concurrent use; Close stops every process and waits for them and for the
// goroutines reading their output.
type Fleet struct {
	// Events receives every event of every candidate, in the order read.
	Events chan Event
	argv0  []string
	env    []string
	stderr io.Writer

	mu    sync.Mutex
	procs map[string]*exec.Cmd
	wg    sync.WaitGroup
}

// NewFleet returns a Fleet that starts candidates as argv0 followed by their
// arguments (argv0 usually re-executes the current binary with Arg), with env
// added to the environment, and their standard error going to stderr (nil
// discards it).
func NewFleet(argv0, env []string, stderr io.Writer) *Fleet {
	if stderr == nil {
		stderr = io.Discard
	}
	return &Fleet{Events: make(chan Event, 1<<16), argv0: argv0, env: env, stderr: stderr, procs: map[string]*exec.Cmd{}}
}

// Command is how to start a candidate process: Argv0 followed by the
// candidate's flags, with Env added to the environment.
type Command struct {
	Argv0, Env []string
}

// Start launches candidate id with args (the flags of Main; --id is added)
// with the fleet's command.
func (f *Fleet) Start(id string, args ...string) error {
	return f.StartCommand(Command{Argv0: f.argv0, Env: f.env}, id, args...)
}

// StartCommand launches candidate id with c instead of the fleet's command,
// for instance a Python candidate (PythonCommand) next to Go ones; it takes
// the same flags and prints the same events.
func (f *Fleet) StartCommand(c Command, id string, args ...string) error {
	argv := append(append(append([]string{}, c.Argv0...), args...), "--id", id)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Stderr = f.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("candidate %s: %w", id, err)
	}
	f.mu.Lock()
	f.procs[id] = cmd
	f.mu.Unlock()
	f.wg.Go(func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err == nil {
				f.Events <- ev
			}
		}
		_ = cmd.Wait()
		f.Events <- Event{Ev: "exited", ID: id, Mono: Mono()}
	})
	return nil
}

// Signal sends sig to candidate id.
func (f *Fleet) Signal(id string, sig syscall.Signal) error {
	f.mu.Lock()
	cmd := f.procs[id]
	f.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("candidate %s: not started", id)
	}
	return cmd.Process.Signal(sig)
}

// Close sends SIGTERM to every candidate, SIGKILL after grace, and waits for
// all of them.
func (f *Fleet) Close(grace time.Duration) {
	f.mu.Lock()
	procs := f.procs
	f.procs = map[string]*exec.Cmd{}
	f.mu.Unlock()
	for _, cmd := range procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() { // joined below
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		for _, cmd := range procs {
			_ = cmd.Process.Kill()
		}
		<-done
	}
}
