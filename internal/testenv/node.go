package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/leasehold/leasehold/internal/image"
)

// NodeName is the name of the test cluster's one node.
const NodeName = "leasehold-node"

// PauseImage is the sandbox image the node's containerd uses; StartCluster
// builds and imports it, so nothing is pulled.
const PauseImage = "leasehold.local/pause:1"

// ClusterOptions configure StartCluster. The zero value is usable.
type ClusterOptions struct {
	// Output, if set, receives build progress.
	Output io.Writer
	// Images are docker-save tarballs imported into the node's containerd
	// before StartCluster returns.
	Images []string
}

// Cluster is a single-node Kubernetes cluster: the ControlPlane (etcd,
// kube-apiserver) plus kube-controller-manager and kube-scheduler on this
// machine, and a node — containerd, kubelet and kube-proxy — in a network
// and mount namespace of its own, joined to this machine by a veth pair.
//
// Everything the node changes stays in its namespaces, its cgroup and its
// folder: iptables rules and ip_forward live in the node's network
// namespace; /run, /var/lib and /var/log (where containerd, the CNI plugins
// and the kubelet write whatever their configuration) are bind mounts of
// folders in Dir seen only by the node; the kernel settings the kubelet
// would change are files in Dir mounted over their /proc/sys entries. Stop
// kills every process of the node's cgroup, which ends the namespaces and
// their mounts, and removes the cgroup and Dir.
//
// Pods reach the apiserver through the `kubernetes` Service (kube-proxy,
// iptables mode) with their projected ServiceAccount tokens; the kubelet,
// kube-proxy and the controllers authenticate with client certificates.
type Cluster struct {
	*ControlPlane
	// NodeDir holds the node's configuration, logs and state.
	NodeDir string
	// NodeIP is the node's address; HostIP this machine's end of the link,
	// where the apiserver listens.
	NodeIP, HostIP string
	// PodCIDR is the range pods' addresses come from (routed to the node).
	PodCIDR string
	// ContainerdSocket is the node's containerd socket (for ctr).
	ContainerdSocket string

	nodeBin string
	link    string
	holder  *proc
	cgroups *cgroupTree
	procs   map[string]*proc
	argv    map[string][]string // name -> bin and args of a process spawnNode started
	ca      *clientCA
}

// StartCluster builds (if needed) and starts a single-node cluster and
// returns once the node is Ready with every image of opts imported. The
// caller must call Stop. It needs root and the packages NodePrerequisites
// names; it fails with one error saying what is missing.
func StartCluster(ctx context.Context, opts ClusterOptions) (_ *Cluster, err error) {
	if err := NodePrerequisites(); err != nil {
		return nil, err
	}
	if err := sweepStale(); err != nil {
		return nil, err
	}
	nodeBin, err := nodeBinaries(ctx, opts.Output)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "leasehold-node-")
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	c := &Cluster{NodeDir: dir, nodeBin: nodeBin, procs: map[string]*proc{}, argv: map[string][]string{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	pause := filepath.Join(dir, "pause.tar")
	if err := buildPause(ctx, dir, pause); err != nil {
		return nil, err
	}
	if err := c.startNamespaces(); err != nil {
		return nil, err
	}
	if c.ca, err = newClientCA(dir); err != nil {
		return nil, err
	}
	kcFile, kcKey, err := c.ca.issue(dir, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
	if err != nil {
		return nil, err
	}
	c.ControlPlane, err = StartControlPlane(ctx, Options{
		Output:  opts.Output,
		Address: c.HostIP,
		APIServerArgs: []string{
			"--endpoint-reconciler-type=lease",
			"--disable-admission-plugins=",
			"--enable-admission-plugins=NodeRestriction",
			"--authorization-mode=Node,RBAC",
			"--client-ca-file=" + c.ca.File,
			"--kubelet-client-certificate=" + kcFile,
			"--kubelet-client-key=" + kcKey,
			"--kubelet-preferred-address-types=InternalIP,Hostname",
		},
	})
	if err != nil {
		return nil, err
	}
	if err := c.startControllers(); err != nil {
		return nil, err
	}
	if err := c.startNode(ctx); err != nil {
		return nil, err
	}
	for _, img := range append([]string{pause}, opts.Images...) {
		if err := c.ImportImage(ctx, img); err != nil {
			return nil, err
		}
	}
	if err := c.waitNodeReady(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// nodeBinaries returns the folder with kubelet, kube-proxy, kube-scheduler
// and kube-controller-manager, built by hack/node.sh when not cached.
func nodeBinaries(ctx context.Context, output io.Writer) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "node.sh"))
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, &stdout, output
	if output == nil {
		cmd.Stderr = io.Discard
	}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("testenv: building the node with hack/node.sh failed: %w (run it by hand to see why)", err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1], nil
}

func buildPause(ctx context.Context, dir, file string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	return image.BuildTarball(ctx, root, dir, "./internal/image/pause", "", file, PauseImage, image.Pause)
}

// kubeletSysctls are the kernel settings the kubelet sets when they differ;
// the node sees files holding these values instead (the host keeps its own).
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// startNamespaces starts the process that holds the node's network and mount
// namespaces, mounts the node's private /run, /var/lib, /var/log and kernel
// settings there, and links its network to this machine.
func (c *Cluster) startNamespaces() error {
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, d := range []string{"/run", "/var/lib", "/var/log"} {
		src := filepath.Join(c.NodeDir, "host", strings.ReplaceAll(strings.Trim(d, "/"), "/", "-"))
		if err := os.MkdirAll(src, 0o755); err != nil {
			return fmt.Errorf("testenv: %w", err)
		}
		fmt.Fprintf(&script, "mount --bind %s %s\n", src, d)
	}
	for key, val := range kubeletSysctls {
		f := filepath.Join(c.NodeDir, "host", "sysctl", strings.ReplaceAll(key, "/", "."))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return fmt.Errorf("testenv: %w", err)
		}
		if err := os.WriteFile(f, []byte(val+"\n"), 0o644); err != nil {
			return fmt.Errorf("testenv: %w", err)
		}
		fmt.Fprintf(&script, "mount --bind %s /proc/sys/%s\n", f, key)
	}
	script.WriteString("ip link set lo up\necho ready\nexec sleep infinity\n")
	cmd := exec.Command("unshare", "--mount", "--net", "--propagation", "private", "--", "/bin/sh", "-c", script.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testenv: start the node's namespaces: %w", err)
	}
	c.holder = &proc{cmd: cmd, exited: make(chan struct{})}
	line, _ := bufio.NewReader(out).ReadString('\n')
	go func() { // owned by c.holder: Stop waits on exited
		c.holder.err = cmd.Wait()
		close(c.holder.exited)
	}()
	if strings.TrimSpace(line) != "ready" {
		<-c.holder.exited
		return fmt.Errorf("testenv: set up the node's namespaces: %v: %s", c.holder.err, stderr.Bytes())
	}
	return c.linkHost(cmd.Process.Pid)
}

// linkHost creates the veth pair between this machine and the node, picking a
// free index k: host 172.30.k.1/30, node 172.30.k.2/30, pods 10.240.k.0/24
// (routed to the node). The host end disappears with the node's namespace.
func (c *Cluster) linkHost(pid int) error {
	var lastErr error
	for range 20 {
		n, err := rand.Int(rand.Reader, big.NewInt(250))
		if err != nil {
			return fmt.Errorf("testenv: %w", err)
		}
		k := int(n.Int64()) + 1
		name := "lhnode" + strconv.Itoa(k)
		if lastErr = run("ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", strconv.Itoa(pid)); lastErr != nil {
			continue // taken by another node on this machine
		}
		c.link = name
		c.HostIP = fmt.Sprintf("172.30.%d.1", k)
		c.NodeIP = fmt.Sprintf("172.30.%d.2", k)
		c.PodCIDR = fmt.Sprintf("10.240.%d.0/24", k)
		ns := []string{"-t", strconv.Itoa(pid), "-n", "--"}
		steps := [][]string{
			{"ip", "addr", "add", c.HostIP + "/30", "dev", name},
			{"ip", "link", "set", name, "up"},
			{"ip", "route", "add", c.PodCIDR, "via", c.NodeIP, "dev", name},
			append(append([]string{"nsenter"}, ns...), "ip", "addr", "add", c.NodeIP+"/30", "dev", "eth0"),
			append(append([]string{"nsenter"}, ns...), "ip", "link", "set", "eth0", "up"),
			append(append([]string{"nsenter"}, ns...), "ip", "route", "add", "default", "via", c.HostIP),
		}
		for _, s := range steps {
			if err := run(s[0], s[1:]...); err != nil {
				return fmt.Errorf("testenv: link the node: %w", err)
			}
		}
		return nil
	}
	return fmt.Errorf("testenv: no free link name lhnode1..250 for the node: %w", lastErr)
}

// Stop stops the node and the control plane and leaves the machine as it
// was: no process, mount, namespace, link, cgroup or file of the cluster
// survives. Safe to call more than once.
func (c *Cluster) Stop() error {
	var errs []error
	for _, name := range []string{"kube-proxy", "kubelet", "kube-scheduler", "kube-controller-manager", "containerd"} {
		if p := c.procs[name]; p != nil {
			stopProcNow(p)
		}
	}
	c.procs = map[string]*proc{}
	if c.cgroups != nil {
		errs = append(errs, c.cgroups.kill())
	}
	if c.holder != nil {
		stopProcNow(c.holder)
		c.holder = nil
	}
	if c.cgroups != nil {
		errs = append(errs, c.cgroups.remove())
		c.cgroups = nil
	}
	if c.link != "" {
		errs = append(errs, waitLinkGone(c.link))
		c.link = ""
	}
	if c.ControlPlane != nil {
		errs = append(errs, c.ControlPlane.Stop())
	}
	if c.NodeDir != "" {
		errs = append(errs, os.RemoveAll(c.NodeDir))
	}
	return errors.Join(errs...)
}

// stopProcNow SIGKILLs a process group and waits for its leader.
func stopProcNow(p *proc) {
	p.stopping.Store(true)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// waitLinkGone waits until the kernel has removed the host end of the node's
// link, which happens once its namespace is gone.
func waitLinkGone(name string) error {
	for range 500 {
		if _, err := os.Stat(filepath.Join("/sys/class/net", name)); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := run("ip", "link", "del", name); err != nil {
		return fmt.Errorf("testenv: link %s outlived the node: %w", name, err)
	}
	return nil
}

// kubeconfig writes a kubeconfig for the identity cn (groups orgs) with a
// client certificate, and returns its path.
func (c *Cluster) kubeconfig(name, cn string, orgs ...string) (string, error) {
	certFile, keyFile, err := c.ca.issue(c.NodeDir, name, cn, orgs...)
	if err != nil {
		return "", err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["leasehold"] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: c.caData}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificate: certFile, ClientKey: keyFile}
	cfg.Contexts["leasehold"] = &clientcmdapi.Context{Cluster: "leasehold", AuthInfo: name}
	cfg.CurrentContext = "leasehold"
	path := filepath.Join(c.NodeDir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	return path, nil
}

// startControllers starts kube-controller-manager and kube-scheduler on this
// machine.
func (c *Cluster) startControllers() error {
	kcm, err := c.kubeconfig("kube-controller-manager", "system:kube-controller-manager", "system:masters")
	if err != nil {
		return err
	}
	sched, err := c.kubeconfig("kube-scheduler", "system:kube-scheduler", "system:masters")
	if err != nil {
		return err
	}
	if err := c.spawnHost("kube-controller-manager",
		"--kubeconfig="+kcm,
		"--leader-elect=false",
		"--secure-port=0",
		"--service-account-private-key-file="+filepath.Join(c.Dir, "sa.key"),
		"--root-ca-file="+filepath.Join(c.Dir, "certs", "apiserver.crt"),
		"--controllers=*",
		"--v=1",
	); err != nil {
		return err
	}
	return c.spawnHost("kube-scheduler", "--kubeconfig="+sched, "--leader-elect=false", "--secure-port=0", "--v=1")
}

func (c *Cluster) spawnHost(name string, args ...string) error {
	p, err := startProc(filepath.Join(c.NodeDir, name+".log"), filepath.Join(c.nodeBin, name), args)
	if err != nil {
		return err
	}
	c.procs[name] = p
	return nil
}

// spawnNode starts bin inside the node's namespaces and cgroup.
func (c *Cluster) spawnNode(name, bin string, args ...string) error {
	procs, err := c.cgroups.Sub(name)
	if err != nil {
		return err
	}
	script := `for f in ` + strings.Join(procs, " ") + `; do echo $$ > "$f"; done; exec nsenter -t ` +
		strconv.Itoa(c.holder.cmd.Process.Pid) + ` -m -n -- "$@"`
	p, err := startProc(filepath.Join(c.NodeDir, name+".log"), "/bin/sh", append([]string{"-c", script, "sh", bin}, args...))
	if err != nil {
		return err
	}
	c.procs[name] = p
	c.argv[name] = append([]string{bin}, args...)
	return nil
}

// startProc starts path in its own process group, killed if this process
// dies, with its output appended to logPath.
func startProc(logPath, path string, args []string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("testenv: start %s: %w", filepath.Base(path), err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { // owned by p: Stop waits on p.exited
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// startNode writes the node's configuration and starts containerd, the
// kubelet and kube-proxy in its namespaces.
func (c *Cluster) startNode(ctx context.Context) error {
	var tok [4]byte
	_, _ = rand.Read(tok[:])
	cg, err := newCgroupTree(fmt.Sprintf("leasehold-node-%d-%s", os.Getpid(), hex.EncodeToString(tok[:])))
	if err != nil {
		return err
	}
	c.cgroups = cg
	d := c.NodeDir
	c.ContainerdSocket = filepath.Join(d, "containerd", "containerd.sock")
	files := map[string]string{
		"containerd.toml":                 containerdConfig(d, c.ContainerdSocket),
		"cni/net.d/10-leasehold.conflist": cniConfig(d, c.PodCIDR),
	}
	kubeletKC, err := c.kubeconfig("kubelet", "system:node:"+NodeName, "system:nodes")
	if err != nil {
		return err
	}
	proxyKC, err := c.kubeconfig("kube-proxy", "system:kube-proxy")
	if err != nil {
		return err
	}
	files["kubelet.yaml"] = kubeletConfig(c.ContainerdSocket, c.NodeIP, c.ca.File, cg.rel)
	files["kube-proxy.yaml"] = proxyConfig(proxyKC, c.PodCIDR)
	for name, body := range files {
		p := filepath.Join(d, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("testenv: %w", err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return fmt.Errorf("testenv: %w", err)
		}
	}
	ctrd, _ := exec.LookPath("containerd")
	if err := c.spawnNode("containerd", ctrd, "--config", filepath.Join(d, "containerd.toml")); err != nil {
		return err
	}
	if err := c.waitContainerd(ctx); err != nil {
		return err
	}
	if err := c.spawnNode("kubelet", filepath.Join(c.nodeBin, "kubelet"),
		"--config="+filepath.Join(d, "kubelet.yaml"),
		"--kubeconfig="+kubeletKC,
		"--hostname-override="+NodeName,
		"--node-ip="+c.NodeIP,
		"--v=1",
	); err != nil {
		return err
	}
	return c.spawnNode("kube-proxy", filepath.Join(c.nodeBin, "kube-proxy"), "--config="+filepath.Join(d, "kube-proxy.yaml"), "--v=1")
}

func (c *Cluster) waitContainerd(ctx context.Context) error {
	for range 600 {
		if err := run("ctr", "--address", c.ContainerdSocket, "version"); err == nil {
			return nil
		}
		if err := c.exited("containerd"); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("testenv: containerd not serving after 30s; log:\n%s", c.NodeLog("containerd"))
}

// exited returns an error if the node process name has exited.
func (c *Cluster) exited(name string) error {
	p := c.procs[name]
	if p == nil {
		return nil
	}
	select {
	case <-p.exited:
		return fmt.Errorf("testenv: %s exited (%v); last log lines:\n%s", name, p.err, c.NodeLog(name))
	default:
		return nil
	}
}

// NodeLog returns the last lines of the log of a node process (containerd,
// kubelet, kube-proxy, kube-scheduler, kube-controller-manager).
func (c *Cluster) NodeLog(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.NodeDir, name+".log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// ImportImage imports a docker-save tarball into the node's containerd (the
// k8s.io namespace the kubelet uses).
func (c *Cluster) ImportImage(ctx context.Context, tarball string) error {
	out, err := exec.CommandContext(ctx, "ctr", "--address", c.ContainerdSocket, "-n", "k8s.io", "images", "import", tarball).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testenv: import %s: %w: %s", tarball, err, out)
	}
	return nil
}

func (c *Cluster) waitNodeReady(ctx context.Context) error {
	cs, err := c.Clientset()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		for _, name := range []string{"containerd", "kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager"} {
			if err := c.exited(name); err != nil {
				return err
			}
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err == nil {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					if err := c.waitDefaultServiceAccount(ctx); err != nil {
						return err
					}
					return c.waitServiceRules(ctx)
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("testenv: node %s not Ready after 3 minutes; kubelet log:\n%s", NodeName, c.NodeLog("kubelet"))
}

// waitDefaultServiceAccount waits for the controllers to have created the
// default ServiceAccount, which pods need.
func (c *Cluster) waitDefaultServiceAccount(ctx context.Context) error {
	cs, err := c.Clientset()
	if err != nil {
		return err
	}
	for range 600 {
		if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("testenv: no default ServiceAccount after a minute; kube-controller-manager log:\n%s", c.NodeLog("kube-controller-manager"))
}

// waitServiceRules waits until kube-proxy has written the node's rules for
// the `kubernetes` Service (a DNAT to the apiserver), so that the first pod
// that talks to the apiserver does not find the Service's address dead.
func (c *Cluster) waitServiceRules(ctx context.Context) error {
	var out []byte
	for range 600 {
		var err error
		out, err = exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(c.holder.cmd.Process.Pid), "-n", "--", "iptables-save", "-t", "nat").Output()
		if err == nil && hasServiceDNAT(out) {
			return nil
		}
		if err := c.exited("kube-proxy"); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("testenv: kube-proxy has not written the rules of the kubernetes Service after a minute; its log:\n%s", c.NodeLog("kube-proxy"))
}

// hasServiceDNAT reports whether an iptables-save listing has the DNAT of
// the `kubernetes` Service's endpoint.
func hasServiceDNAT(rules []byte) bool {
	for line := range bytes.Lines(rules) {
		if bytes.Contains(line, []byte("default/kubernetes:https")) && bytes.Contains(line, []byte("-j DNAT")) {
			return true
		}
	}
	return false
}

// SignalNode sends sig to one of the node's processes: "containerd",
// "kubelet" or "kube-proxy" (SIGSTOP and SIGCONT freeze and thaw it, as a
// node that stops reporting would).
func (c *Cluster) SignalNode(name string, sig syscall.Signal) error {
	p := c.procs[name]
	if p == nil {
		return fmt.Errorf("testenv: the node has no process %q", name)
	}
	select {
	case <-p.exited:
		return fmt.Errorf("testenv: %s has exited", name)
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// KillNode SIGKILLs one of the node's processes ("kubelet", "kube-proxy",
// "containerd") and waits until it is gone; RestartNode starts it again.
func (c *Cluster) KillNode(name string) error {
	p := c.procs[name]
	if p == nil || c.argv[name] == nil {
		return fmt.Errorf("testenv: the node has no process %q", name)
	}
	p.stopping.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("testenv: kill %s: %w", name, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("testenv: %s still runs 30s after SIGKILL", name)
	}
}

// RestartNode starts again, with the same arguments, a node process that
// KillNode (or a crash) ended. Its log continues in the same file.
func (c *Cluster) RestartNode(name string) error {
	argv := c.argv[name]
	if argv == nil {
		return fmt.Errorf("testenv: the node has no process %q", name)
	}
	if p := c.procs[name]; p != nil {
		select {
		case <-p.exited:
		default:
			return fmt.Errorf("testenv: %s is running", name)
		}
	}
	return c.spawnNode(name, argv[0], argv[1:]...)
}
