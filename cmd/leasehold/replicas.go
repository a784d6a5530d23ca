package main

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// start is a workload reporting that it began, with its replica's token.
type start struct {
	id, token string
	at        time.Time
}

// replicas are the `leasehold run` processes of the demo. Safe for
// concurrent use; close stops and waits for every replica started.
type replicas struct {
	self   string
	args   []string
	starts chan start

	mu     sync.Mutex
	procs  map[string]*exec.Cmd
	stderr map[string]*tail // of each replica's latest process
	wg     sync.WaitGroup
}

func newReplicas(self string, args []string) *replicas {
	return &replicas{self: self, args: args, starts: make(chan start, 16),
		procs: map[string]*exec.Cmd{}, stderr: map[string]*tail{}}
}

// workload prints one line when it starts and runs until SIGTERM.
const workload = `echo "STARTED $LEASEHOLD_TOKEN"; trap 'exit 0' TERM; while :; do sleep 0.1; done`

func (r *replicas) start(id string) error {
	args := append(append([]string{}, r.args...), "--identity", id, "--", "sh", "-c", workload)
	cmd := exec.Command(r.self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr := &tail{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	r.mu.Lock()
	r.procs[id] = cmd
	r.stderr[id] = stderr
	r.mu.Unlock()
	r.wg.Go(func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if tok, ok := strings.CutPrefix(sc.Text(), "STARTED "); ok {
				r.starts <- start{id: id, token: tok, at: time.Now()}
			}
		}
		_ = cmd.Wait()
	})
	return nil
}

// signal sends sig to a replica's leasehold process (not its workload).
func (r *replicas) signal(id string, sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cmd := r.procs[id]; cmd != nil {
		// A killed leasehold takes its workload down with it (the workload
		// is started with a parent-death signal).
		_ = cmd.Process.Signal(sig)
	}
}

func (r *replicas) next(ctx context.Context, timeout time.Duration) (start, error) {
	select {
	case s := <-r.starts:
		return s, nil
	case <-ctx.Done():
		return start{}, ctx.Err()
	case <-time.After(timeout):
		return start{}, fmt.Errorf("no replica started its workload within %v; what the replicas said last:%s", timeout, r.lastWords())
	}
}

// lastWords returns the end of each replica's standard error.
func (r *replicas) lastWords() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, id := range slices.Sorted(maps.Keys(r.stderr)) {
		fmt.Fprintf(&b, "\n%s:\n%s", id, r.stderr[id])
	}
	return b.String()
}

// tailBytes is how much of a replica's standard error is kept.
const tailBytes = 2048

// tail keeps the last tailBytes written to it. Safe for concurrent use.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > tailBytes {
		t.b = append(t.b[:0], t.b[len(t.b)-tailBytes:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// close stops every replica (SIGTERM, then SIGKILL) and waits for them.
func (r *replicas) close() {
	r.mu.Lock()
	for _, cmd := range r.procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	procs := r.procs
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { // joined below
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		for _, cmd := range procs {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		<-done
	}
}
