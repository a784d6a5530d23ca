package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The node's processes live in a cgroup of their own in every hierarchy,
// below this process's memory cgroup (so that its memory is accounted where
// ours is); killing what is in it and removing it leaves no trace.
type cgroupTree struct {
	rel     string   // path inside each hierarchy, "/…/leasehold-node-…"
	mounts  []string // hierarchy mount points
	created []string // folders this tree made, parents first
}

// cgroupMounts returns the mount points of the cgroup hierarchies.
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		i := slices.Index(fields, "-")
		if i < 0 || i+1 >= len(fields) {
			continue
		}
		if t := fields[i+1]; t == "cgroup" || t == "cgroup2" {
			mounts = append(mounts, fields[4])
		}
	}
	return mounts, sc.Err()
}

// ownMemoryCgroup is this process's cgroup in the memory hierarchy ("/" if
// none is named).
func ownMemoryCgroup() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "/"
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), "memory") {
			return parts[2]
		}
	}
	return "/"
}

func newCgroupTree(name string) (*cgroupTree, error) {
	mounts, err := cgroupMounts()
	if err != nil || len(mounts) == 0 {
		return nil, fmt.Errorf("testenv: the node needs cgroups, and none are mounted under /sys/fs/cgroup (%v)", err)
	}
	t := &cgroupTree{rel: filepath.Join(ownMemoryCgroup(), name), mounts: mounts}
	for _, m := range mounts {
		if err := t.mkdirAll(m, t.rel); err != nil {
			t.remove()
			return nil, err
		}
	}
	return t, nil
}

// mkdirAll creates rel below the hierarchy m, folder by folder, recording
// each one it made; a new cpuset folder inherits its parent's cpus and mems.
func (t *cgroupTree) mkdirAll(m, rel string) error {
	cur := m
	for _, part := range strings.Split(strings.Trim(rel, "/"), "/") {
		parent := cur
		cur = filepath.Join(cur, part)
		err := os.Mkdir(cur, 0o755)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("testenv: create cgroup %s: %w", cur, err)
		}
		t.created = append(t.created, cur)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
				if err := os.WriteFile(filepath.Join(cur, f), b, 0o644); err != nil {
					return fmt.Errorf("testenv: cgroup %s: %w", cur, err)
				}
			}
		}
	}
	return nil
}

// Sub creates the child folder name in every hierarchy and returns the
// cgroup.procs files a process is moved into.
func (t *cgroupTree) Sub(name string) ([]string, error) {
	var procs []string
	for _, m := range t.mounts {
		if err := t.mkdirAll(m, filepath.Join(t.rel, name)); err != nil {
			return nil, err
		}
		procs = append(procs, filepath.Join(m, t.rel, name, "cgroup.procs"))
	}
	return procs, nil
}

// pids returns every process in the tree, in any hierarchy.
func (t *cgroupTree) pids() []int {
	seen := map[int]bool{}
	for _, m := range t.mounts {
		_ = filepath.WalkDir(filepath.Join(m, t.rel), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	pids := make([]int, 0, len(seen))
	for p := range seen {
		pids = append(pids, p)
	}
	return pids
}

// kill SIGKILLs every process in the tree until none is left (a minute at
// most).
func (t *cgroupTree) kill() error {
	deadline := time.Now().Add(time.Minute)
	for {
		pids := t.pids()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testenv: processes %v survive SIGKILL in cgroup %s", pids, t.rel)
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// remove removes every folder below and including the tree's own ones,
// deepest first.
func (t *cgroupTree) remove() error {
	var dirs []string
	for _, m := range t.mounts {
		_ = filepath.WalkDir(filepath.Join(m, t.rel), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && !slices.Contains(t.created, p) {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	dirs = append(dirs, reversed(t.created)...)
	var errs []error
	for _, d := range dirs {
		var err error
		for range 100 { // a cgroup whose last process just died may be busy for a moment
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("testenv: remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

func reversed(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

// run runs a command and returns its error with its output.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// NodePrerequisites reports, in one error, everything the node needs from
// this machine and does not find: root, the Debian packages containerd,
// runc, containernetworking-plugins and iptables, util-linux's unshare and
// nsenter, iproute2's ip, and mounted cgroups.
func NodePrerequisites() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (the node mounts, creates network namespaces and cgroups: run as root)")
	}
	pkgs := map[string]string{
		"containerd": "containerd", "ctr": "containerd", "runc": "runc", "iptables": "iptables",
		"unshare": "util-linux", "nsenter": "util-linux", "ip": "iproute2",
	}
	var need []string
	for _, bin := range []string{"containerd", "ctr", "runc", "iptables", "unshare", "nsenter", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
			need = append(need, pkgs[bin])
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			missing = append(missing, filepath.Join(cniBinDir, p))
			need = append(need, "containernetworking-plugins")
		}
	}
	if m, err := cgroupMounts(); err != nil || len(m) == 0 {
		missing = append(missing, "cgroups mounted under /sys/fs/cgroup")
	}
	if len(missing) == 0 {
		return nil
	}
	msg := "testenv: the node cannot start; missing: " + strings.Join(missing, ", ")
	if len(need) > 0 {
		slices.Sort(need)
		msg += "; install them with `apt-get install " + strings.Join(slices.Compact(need), " ") + "` (hack/node-deps.sh does it)"
	}
	return errors.New(msg)
}

// cniBinDir is where containernetworking-plugins installs the plugins (a
// variable for the tests).
var cniBinDir = "/usr/lib/cni"

// sweepStale cleans up after nodes whose owner died without stopping them
// (a test binary killed with SIGKILL): their daemons die with their owner,
// but containers and shims would live on in the node's cgroup, keeping its
// namespaces. A node's cgroup is named after its owner's PID.
func sweepStale() error {
	mounts, err := cgroupMounts()
	if err != nil || len(mounts) == 0 {
		return nil
	}
	base := ownMemoryCgroup()
	seen := map[string]bool{}
	for _, m := range mounts {
		entries, _ := os.ReadDir(filepath.Join(m, base))
		for _, e := range entries {
			if !e.IsDir() || !nodeCgroupName.MatchString(e.Name()) || seen[e.Name()] {
				continue
			}
			seen[e.Name()] = true
			parts := strings.Split(e.Name(), "-") // leasehold-node-<pid>-<rand>
			if len(parts) < 4 {
				continue
			}
			pid, err := strconv.Atoi(parts[2])
			if err != nil || syscall.Kill(pid, 0) == nil {
				continue // a live owner: its node, not a leftover
			}
			t := &cgroupTree{rel: filepath.Join(base, e.Name()), mounts: mounts}
			if err := errors.Join(t.kill(), t.remove()); err != nil {
				return fmt.Errorf("testenv: clean up the node left by process %d: %w", pid, err)
			}
		}
	}
	return nil
}
