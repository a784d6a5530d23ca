package testenv

import (
	"context"
	"fmt"
)

// ExitError reports that etcd or kube-apiserver exited although nobody
// stopped it.
type ExitError struct {
	// Name is "etcd" or "kube-apiserver".
	Name string
	// Err is what waiting for the process returned: an *exec.ExitError
	// ("exit status 1", "signal: killed"), or nil for exit status 0.
	Err error
	// Log holds the last lines of the process's log.
	Log string
}

// Status is the exit status as the shell's wait reports it: "exit status
// N" or "signal: NAME".
func (e *ExitError) Status() string {
	if e.Err == nil {
		return "exit status 0"
	}
	return e.Err.Error()
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("testenv: %s exited (%s); last log lines:\n%s", e.Name, e.Status(), e.Log)
}

func (e *ExitError) Unwrap() error { return e.Err }

// Wait blocks until etcd or kube-apiserver exits on its own and returns an
// *ExitError naming it; or until ctx ends, and returns ctx.Err(); or until
// Stop has stopped both, and returns nil. Wait watches the processes that
// run when it is called: an exit caused by a restart is not reported, and
// the restarted process is not watched (call Wait again).
func (c *ControlPlane) Wait(ctx context.Context) error {
	c.mu.Lock()
	etcd, api := c.etcd, c.apiserver
	c.mu.Unlock()
	for etcd != nil || api != nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited(etcd):
			if !etcd.stopping.Load() {
				return &ExitError{Name: "etcd", Err: etcd.err, Log: c.logTail("etcd")}
			}
			etcd = nil
		case <-exited(api):
			if !api.stopping.Load() {
				return &ExitError{Name: "kube-apiserver", Err: api.err, Log: c.logTail("kube-apiserver")}
			}
			api = nil
		}
	}
	return nil
}

// exited returns the channel closed when p has exited; nil (never ready)
// for no process.
func exited(p *proc) <-chan struct{} {
	if p == nil {
		return nil
	}
	return p.exited
}
