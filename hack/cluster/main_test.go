package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/testproc"
)

// startTimeout allows for the first build of the control plane.
const startTimeout = 15 * time.Minute

// startCluster builds and starts this command, and waits until it has
// printed the export line.
func startCluster(t *testing.T) (*exec.Cmd, *testproc.Proc) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "cluster")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-kubeconfig", filepath.Join(dir, "kubeconfig"))
	p := testproc.Start(t, cmd)
	p.Stdout.WaitFor(t, "export KUBECONFIG="+filepath.Join(dir, "kubeconfig"), startTimeout)
	return cmd, p
}

// TestReportsAnExit: when kube-apiserver dies, cluster says so, with the
// exit status, stops etcd and exits 1.
func TestReportsAnExit(t *testing.T) {
	cmd, p := startCluster(t)
	api, etcd := childPID(t, cmd.Process.Pid, "kube-apiserver"), childPID(t, cmd.Process.Pid, "etcd")
	if err := syscall.Kill(api, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(t); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if want := "kube-apiserver exited (signal: killed)"; !strings.Contains(p.Stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, p.Stderr)
	}
	if err := syscall.Kill(etcd, 0); err == nil {
		t.Errorf("etcd (pid %d) still runs after cluster exited", etcd)
	}
}

// TestStopsOnInterrupt: Ctrl-C stops the control plane and exits 0.
func TestStopsOnInterrupt(t *testing.T) {
	_, p := startCluster(t)
	p.Signal(os.Interrupt)
	if code := p.Wait(t); code != 0 {
		t.Errorf("exit status %d after SIGINT, want 0", code)
	}
}

// childPID returns the pid of the child of parent whose command is name.
func childPID(t *testing.T, parent int, name string) int {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited meanwhile
		}
		var pid, ppid int
		var state string
		// pid (comm) state ppid ...; these commands have no spaces in comm.
		if _, err := fmt.Sscanf(string(b), "%d ("+name+") %s %d", &pid, &state, &ppid); err == nil && ppid == parent {
			return pid
		}
	}
	t.Fatalf("no child %s of pid %d", name, parent)
	return 0
}
