package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// HostState is what a node could leave behind on this machine: mounts,
// network links and namespaces, host iptables rules, kernel settings,
// leftover folders and cgroups, and processes of a node. Compare a state
// taken before StartCluster with one taken after Stop.
type HostState struct {
	Items map[string][]string
}

// hostPaths are folders the node's components write to by default; the node
// must never create them on the host.
var hostPaths = []string{
	"/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/run/containerd",
	"/var/lib/containerd", "/var/lib/cni", "/run/netns", "/var/run/netns", "/etc/cni", "/opt/cni",
	"/run/flannel", "/var/lib/calico", "/etc/kubernetes",
}

// hostSysctls are the kernel settings the kubelet, kube-proxy or the CNI
// bridge change when they run on the host.
var hostSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv4/conf/all/route_localnet",
	"net/bridge/bridge-nf-call-iptables", "net/netfilter/nf_conntrack_max",
}

var nodeCgroupName = regexp.MustCompile(`^leasehold-node-`)

// SnapshotHost records the HostState of this machine.
func SnapshotHost() (HostState, error) {
	s := HostState{Items: map[string][]string{}}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return s, fmt.Errorf("testenv: %w", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(mi)), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 {
			s.add("mount", f[4])
		}
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		s.add("link", l.Name())
	}
	for _, table := range []string{"filter", "nat", "mangle", "raw"} {
		for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
			out, err := exec.Command(cmd, "-t", table).Output()
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(out), "\n") {
				if line == "" || line[0] == '#' {
					continue
				}
				if line[0] == ':' { // chain with counters: keep the name and policy
					f := strings.Fields(line)
					line = strings.Join(f[:min(2, len(f))], " ")
				}
				s.add("iptables", cmd+" "+table+": "+line)
			}
		}
	}
	for _, k := range hostSysctls {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil {
			s.add("sysctl", k+"="+strings.TrimSpace(string(b)))
		}
	}
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			s.add("path", p)
		}
	}
	if tmp, err := filepath.Glob(filepath.Join(os.TempDir(), "leasehold-node-*")); err == nil {
		for _, p := range tmp {
			s.add("path", p)
		}
	}
	if mounts, err := cgroupMounts(); err == nil {
		for _, m := range mounts {
			_ = filepath.WalkDir(m, func(p string, d os.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				if nodeCgroupName.MatchString(d.Name()) {
					s.add("cgroup", p)
					return filepath.SkipDir
				}
				return nil
			})
		}
	}
	s.addProcesses()
	for k := range s.Items {
		slices.Sort(s.Items[k])
	}
	return s, nil
}

// addProcesses records processes of a node: containerd, its shims, the
// kubelet, kube-proxy, and anything in a node's cgroup or network namespace
// other than this machine's.
func (s HostState) addProcesses() {
	hostNet, _ := os.Readlink("/proc/self/ns/net")
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		name := filepath.Base(args[0])
		cg, _ := os.ReadFile(filepath.Join("/proc", pid, "cgroup"))
		netns, _ := os.Readlink(filepath.Join("/proc", pid, "ns", "net"))
		switch {
		case strings.Contains(string(cg), "/leasehold-node-"),
			slices.Contains([]string{"containerd", "containerd-shim-runc-v2", "kubelet", "kube-proxy", "pause"}, name),
			strings.Contains(string(cmdline), "leasehold-node-"):
			s.add("process", name+" "+pid)
		case netns != "" && hostNet != "" && netns != hostNet:
			s.add("process in another network namespace", name+" "+pid+" "+netns)
		}
	}
}

func (s HostState) add(kind, item string) { s.Items[kind] = append(s.Items[kind], item) }

// Diff lists what differs from before to s ("+" new, "-" gone).
func (s HostState) Diff(before HostState) []string {
	var d []string
	kinds := map[string]bool{}
	for k := range s.Items {
		kinds[k] = true
	}
	for k := range before.Items {
		kinds[k] = true
	}
	for k := range kinds {
		for _, it := range s.Items[k] {
			if !slices.Contains(before.Items[k], it) {
				d = append(d, "+ "+k+": "+it)
			}
		}
		for _, it := range before.Items[k] {
			if !slices.Contains(s.Items[k], it) {
				d = append(d, "- "+k+": "+it)
			}
		}
	}
	slices.Sort(d)
	return d
}
