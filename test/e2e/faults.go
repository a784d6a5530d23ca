//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/internal/testproc"
)

// APIServerAddresses are the addresses a pod reaches the apiserver at: the
// `kubernetes` Service's ClusterIP and the apiserver's own address.
func APIServerAddresses(ctx context.Context, c *testenv.Cluster, cs kubernetes.Interface) ([]string, error) {
	svc, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return []string{svc.Spec.ClusterIP, c.HostIP}, nil
}

// Partition drops every packet the network namespace of process pid (a
// pod's) sends to addrs, with iptables rules in that namespace only; heal
// removes them. The pod keeps running and its kubelet keeps reporting it:
// only its link to the apiserver is cut.
func Partition(ctx context.Context, pid int, addrs []string) (heal func() error, err error) {
	rule := func(op, addr string) error {
		out, err := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(pid), "-n", "--",
			"iptables", "-w", op, "OUTPUT", "-d", addr, "-j", "DROP").CombinedOutput()
		if err != nil {
			return fmt.Errorf("iptables %s OUTPUT -d %s in the netns of %d: %w: %s", op, addr, pid, err, out)
		}
		return nil
	}
	var added []string
	heal = func() error {
		var errs []error
		for _, a := range added {
			if err := rule("-D", a); err != nil && processExists(pid) {
				errs = append(errs, err) // a pod that died took its namespace and rules along
			}
		}
		added = nil
		return errors.Join(errs...)
	}
	for _, a := range addrs {
		if err := rule("-I", a); err != nil {
			return nil, errors.Join(err, heal())
		}
		added = append(added, a)
	}
	return heal, nil
}

func processExists(pid int) bool { return syscall.Kill(pid, 0) == nil }

// memoryCgroup returns the folder of process pid's cgroup in the memory
// hierarchy (cgroup v1) or its unified cgroup (v2).
func memoryCgroup(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	mounts, err := cgroupMountPoints()
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				if m, ok := mounts["memory"]; ok {
					return filepath.Join(m, parts[2]), nil
				}
			}
		}
		if parts[0] == "0" && parts[1] == "" {
			if m, ok := mounts[""]; ok {
				if _, err := os.Stat(filepath.Join(m, parts[2], "memory.max")); err == nil {
					return filepath.Join(m, parts[2]), nil
				}
			}
		}
	}
	return "", fmt.Errorf("process %d has no memory cgroup:\n%s", pid, b)
}

// cgroupMountPoints maps "memory" (a v1 hierarchy with that controller) and
// "" (the v2 hierarchy) to their mount points.
func cgroupMountPoints() (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, x := range fields {
			if x != "-" || i+3 >= len(fields) {
				continue
			}
			switch fields[i+1] {
			case "cgroup2":
				out[""] = fields[4]
			case "cgroup":
				for _, o := range strings.Split(fields[i+3], ",") {
					if o == "memory" {
						out["memory"] = fields[4]
					}
				}
			}
		}
	}
	return out, sc.Err()
}

// OOMKill makes the kernel's OOM killer kill the main process of the
// container whose main process is pid. It caps the container's memory
// cgroup 16 MiB above what the cgroup uses and marks pid as the process to
// pick first (oom_score_adj 1000). Then a filler joins the cgroup and
// writes zeros to a file on the host's /dev/shm until a charge fails and the
// kernel must kill a process there.
//
// The filler's memory is tmpfs pages, which count towards the cgroup but
// towards no process's size, and the kernel picks by size plus
// oom_score_adj. So pid is picked even if the filler inherits a score of
// 1000 from the test process (a runner may start the tests so) and cannot
// lower it (that needs CAP_SYS_RESOURCE).
//
// The filler is killed and its file removed once pid has died (or after a
// minute); the cap and the score go with the container, whose cgroup the
// runtime removes.
func OOMKill(ctx context.Context, pid int) error {
	dir, err := memoryCgroup(pid)
	if err != nil {
		return err
	}
	limit := filepath.Join(dir, "memory.limit_in_bytes")
	usage := filepath.Join(dir, "memory.usage_in_bytes")
	if _, err := os.Stat(limit); err != nil { // cgroup v2
		limit, usage = filepath.Join(dir, "memory.max"), filepath.Join(dir, "memory.current")
	}
	b, err := os.ReadFile(usage)
	if err != nil {
		return err
	}
	used, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %w", usage, err)
	}
	file, err := os.CreateTemp("/dev/shm", "leasehold-oom-*")
	if err != nil {
		return err
	}
	_ = file.Close()
	defer os.Remove(file.Name())
	if err := os.WriteFile(limit, []byte(strconv.FormatInt(used+16<<20, 10)), 0o644); err != nil {
		return fmt.Errorf("cap %s: %w", limit, err)
	}
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte("1000"), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("/bin/sh", "-c", `echo $$ > "$1" && exec dd if=/dev/zero of="$2" bs=64k status=none`,
		"sh", filepath.Join(dir, "cgroup.procs"), file.Name())
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }() // owned here: read below before returning
	defer func() {
		_ = cmd.Process.Kill()
		<-waited
	}()
	deadline := time.Now().Add(time.Minute)
	for testproc.Running(pid) {
		select {
		case err := <-waited:
			waited <- err
			// Killing pid frees only its own memory, not the filler's
			// file, so the filler fills the cap again at once and the
			// kernel kills it next: its exit can be seen before pid's
			// parent has reaped pid, or before pid's exit is done.
			for end := time.Now().Add(10 * time.Second); testproc.Running(pid) && time.Now().Before(end); {
				time.Sleep(5 * time.Millisecond)
			}
			if !testproc.Running(pid) {
				return nil
			}
			return fmt.Errorf("the memory filler exited before the kernel killed %d: %v", pid, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the kernel did not kill %d within a minute at a cap of %d bytes", pid, used+16<<20)
		}
	}
	return nil
}
