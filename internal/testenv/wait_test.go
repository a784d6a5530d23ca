package testenv

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"
)

// TestWait: Wait does not report a restart, reports a process that exits on
// its own with its name and status, and returns nil once Stop has stopped
// everything.
func TestWait(t *testing.T) {
	c := Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	waited := make(chan error, 1)
	go func() { waited <- c.Wait(ctx) }() // joined below
	if err := c.RestartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	etcd := c.etcd
	c.mu.Unlock()
	if err := syscall.Kill(etcd.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ee *ExitError
	if err := <-waited; !errors.As(err, &ee) || ee.Name != "etcd" || ee.Status() != "signal: killed" {
		t.Fatalf("Wait after etcd was killed: %v, want an *ExitError for etcd, signal: killed", err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Errorf("Wait after Stop: %v, want nil", err)
	}
}
