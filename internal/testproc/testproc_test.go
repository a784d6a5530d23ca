package testproc

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestSignalExitStatus(t *testing.T) {
	p := Start(t, exec.Command("sh", "-c", "echo hello; exec sleep 30"))
	p.Stdout.WaitFor(t, "hello", 10*time.Second)
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(t); code != 128+int(syscall.SIGTERM) {
		t.Errorf("exit status %d after SIGTERM, want %d", code, 128+int(syscall.SIGTERM))
	}
	p.Signal(syscall.SIGTERM) // after exit: does nothing
}

func TestExitStatusAndOutput(t *testing.T) {
	p := Start(t, exec.Command("sh", "-c", "echo out; echo err >&2; exit 3"))
	if code := p.Wait(t); code != 3 {
		t.Errorf("exit status %d, want 3", code)
	}
	if p.Stdout.String() != "out\n" || p.Stderr.String() != "err\n" {
		t.Errorf("stdout %q, stderr %q; want %q and %q", p.Stdout, p.Stderr, "out\n", "err\n")
	}

	c := StartCombined(t, exec.Command("sh", "-c", "echo out; echo err >&2"))
	if code := c.Wait(t); code != 0 {
		t.Errorf("combined: exit status %d, want 0", code)
	}
	if c.Stdout != c.Stderr || c.Stderr.String() != "out\nerr\n" {
		t.Errorf("combined: output %q, want %q in one buffer", c.Stderr, "out\nerr\n")
	}
}

func TestHTTPAddr(t *testing.T) {
	p := Start(t, exec.Command("sh", "-c", `printf 'leasehold: serving HTTP on 127.0.0.1:4321\n' >&2; exec sleep 30`))
	if addr := p.HTTPAddr(t); addr != "127.0.0.1:4321" {
		t.Errorf("HTTPAddr %q, want 127.0.0.1:4321", addr)
	}
}

func TestCleanupKills(t *testing.T) {
	var p *Proc
	t.Run("start", func(t *testing.T) {
		p = Start(t, exec.Command("sleep", "30"))
	})
	select {
	case <-p.done:
	default:
		t.Fatal("the process is still running after its test ended")
	}
	if p.code != 128+int(syscall.SIGKILL) {
		t.Errorf("exit status %d after cleanup, want %d (SIGKILL)", p.code, 128+int(syscall.SIGKILL))
	}
}

// A child that has exited but is not yet waited for (a zombie) does not run.
func TestRunningLeavesOutZombies(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if !Running(pid) {
		t.Fatalf("sleep %d does not run right after it started", pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for Running(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if Running(pid) {
		t.Errorf("killed sleep %d, not yet waited for, still runs", pid)
	}
	if syscall.Kill(pid, 0) != nil {
		t.Errorf("pid %d is gone before it was waited for: the test did not see a zombie", pid)
	}
	_ = cmd.Wait()
}
