// Package testenv runs a real etcd and kube-apiserver on loopback for
// Leasehold's integration tests, benchmarks and demo. The binaries are built
// from the Go module proxy by hack/controlplane.sh (module hack/controlplane)
// and cached under .cache/controlplane; the first build takes several
// minutes, later starts about a second.
//
// The apiserver authenticates with a static admin token and service-account
// tokens, authorizes with RBAC, and serves TLS with a self-signed certificate
// whose CA is written into the kubeconfig, so requests travel exactly as they
// do against a real cluster.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/leasehold/leasehold/internal/testproc"
)

// Options configure StartControlPlane. The zero value is usable.
type Options struct {
	// Dir holds the data, certificates, logs and kubeconfig. Default: a new
	// temporary folder, removed by Stop.
	Dir string
	// Binaries is the folder with etcd, kube-apiserver and kubectl. Default:
	// $LEASEHOLD_CONTROLPLANE_BIN, else built or found by
	// hack/controlplane.sh.
	Binaries string
	// Output, if set, receives the build script's progress.
	Output io.Writer
	// Address is the IP the apiserver binds to and advertises, and the
	// host of URL. Default 127.0.0.1.
	Address string
	// APIServerArgs are appended to kube-apiserver's flags; a flag given
	// again here overrides the default.
	APIServerArgs []string
}

// ControlPlane is a running etcd and kube-apiserver. Safe for concurrent use.
type ControlPlane struct {
	// Dir holds data, certificates, logs and the kubeconfig.
	Dir string
	// Kubeconfig is the path of an admin kubeconfig for kubectl and clients.
	Kubeconfig string
	// URL is the apiserver's https address.
	URL string
	// Bin is the folder with etcd, kube-apiserver and kubectl.
	Bin string

	removeDir  bool
	address    string
	extraArgs  []string
	adminToken string
	caData     []byte
	etcdURL    string
	etcdArgs   []string
	apiArgs    []string

	mu        sync.Mutex
	etcd      *proc
	apiserver *proc
}

// proc is one child process and the channel closed when it has exited.
type proc struct {
	cmd      *exec.Cmd
	exited   chan struct{}
	err      error       // cmd.Wait's; read only after exited is closed
	stopping atomic.Bool // set by stopProc: the exit is intended
}

// StartControlPlane builds (if needed) and starts etcd and kube-apiserver on
// free loopback ports, and returns once the apiserver is ready. The caller
// must call Stop.
func StartControlPlane(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	bin, err := binaries(ctx, opts)
	if err != nil {
		return nil, err
	}
	c := &ControlPlane{Bin: bin, Dir: opts.Dir, address: opts.Address, extraArgs: opts.APIServerArgs}
	if c.address == "" {
		c.address = "127.0.0.1"
	}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "leasehold-cp-"); err != nil {
			return nil, fmt.Errorf("testenv: %w", err)
		}
		c.removeDir = true
	} else if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()
	for try := 1; ; try++ {
		err := c.start(ctx)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, errPortTaken) || try == portTries {
			return nil, err
		}
		if err := c.clearFailedStart(try); err != nil {
			return nil, err
		}
	}
}

// portTries is how many sets of ports StartControlPlane tries. A port is
// picked free and then closed before etcd or kube-apiserver binds it, so
// another process (a test package running at the same time) can take it in
// between; the start is then tried again on new ports.
const portTries = 5

// errPortTaken marks a start that failed because a port picked for it was
// taken by someone else before the binary could bind it.
var errPortTaken = errors.New("a picked port was taken before it could be bound")

// pickPorts picks the ports of one start; tests replace it.
var pickPorts = freePorts

func (c *ControlPlane) start(ctx context.Context) error {
	if err := c.prepare(); err != nil {
		return err
	}
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	return c.startAPIServer(ctx)
}

// clearFailedStart stops what a failed start left running and removes its
// etcd data, whose member URLs name the old ports. The logs are kept, as
// <name>.try<N>.log, so the next start's logs show only its own failure.
func (c *ControlPlane) clearFailedStart(try int) error {
	c.stopProcs()
	for _, name := range []string{"etcd", "kube-apiserver"} {
		log := filepath.Join(c.Dir, name+".log")
		err := os.Rename(log, filepath.Join(c.Dir, fmt.Sprintf("%s.try%d.log", name, try)))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("testenv: %w", err)
		}
	}
	if err := os.RemoveAll(filepath.Join(c.Dir, "etcd")); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	return nil
}

// prepare picks ports and writes keys, the token file and the kubeconfig.
func (c *ControlPlane) prepare() error {
	ports, err := pickPorts(3)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	c.etcdURL = "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	c.URL = "https://" + net.JoinHostPort(c.address, strconv.Itoa(apiPort))

	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	c.adminToken = hex.EncodeToString(tok[:])
	tokens := filepath.Join(c.Dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(c.adminToken+",admin,admin,system:masters\n"), 0o600); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	saKey, saPub, err := writeServiceAccountKey(c.Dir)
	if err != nil {
		return err
	}
	certDir := filepath.Join(c.Dir, "certs")
	c.etcdArgs = []string{
		"--name=leasehold-test",
		"--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + c.etcdURL,
		"--advertise-client-urls=" + c.etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=leasehold-test=" + peerURL,
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}
	c.apiArgs = []string{
		"--etcd-servers=" + c.etcdURL,
		"--bind-address=" + c.address,
		"--advertise-address=" + c.address,
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + certDir,
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		// On SIGTERM, end open watches within a second instead of waiting for
		// them (by default a restart with watch clients takes a minute).
		"--shutdown-watch-termination-grace-period=1s",
		"--v=0",
	}
	c.apiArgs = overrideFlags(c.apiArgs, c.extraArgs)
	return nil
}

func (c *ControlPlane) startEtcd(ctx context.Context) error {
	p, err := c.spawn("etcd", c.etcdArgs)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.etcd = p
	c.mu.Unlock()
	return c.waitReady(ctx, p, "etcd", func(cl *http.Client) bool {
		resp, err := cl.Get(c.etcdURL + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"true"`))
	})
}

func (c *ControlPlane) startAPIServer(ctx context.Context) error {
	p, err := c.spawn("kube-apiserver", c.apiArgs)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.apiserver = p
	c.mu.Unlock()
	err = c.waitReady(ctx, p, "kube-apiserver", func(cl *http.Client) bool {
		req, _ := http.NewRequest(http.MethodGet, c.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
		resp, err := cl.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		return err
	}
	// The self-signed serving certificate exists now: trust it.
	ca, err := os.ReadFile(filepath.Join(c.Dir, "certs", "apiserver.crt"))
	if err != nil {
		return fmt.Errorf("testenv: read apiserver certificate: %w", err)
	}
	c.caData = ca
	return c.writeKubeconfig()
}

// spawn starts a binary in its own process group, killed if this process
// dies, with output going to Dir/<name>.log.
func (c *ControlPlane) spawn(name string, args []string) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(c.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	cmd := exec.Command(filepath.Join(c.Bin, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("testenv: start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { // owned by p: Stop and restarts wait on p.exited
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// waitReady polls ready until it reports true, the process exits, ctx ends
// or a minute passes.
func (c *ControlPlane) waitReady(ctx context.Context, p *proc, name string, ready func(*http.Client) bool) error {
	cl := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	defer cl.CloseIdleConnections()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready(cl) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testenv: waiting for %s: %w", name, ctx.Err())
		case <-p.exited:
			tail := c.logTail(name)
			if strings.Contains(tail, "address already in use") {
				return fmt.Errorf("testenv: %s exited before it was ready: %w; last log lines:\n%s", name, errPortTaken, tail)
			}
			return fmt.Errorf("testenv: %s exited before it was ready (%v); last log lines:\n%s", name, p.err, tail)
		case <-deadline.C:
			return fmt.Errorf("testenv: %s not ready after a minute; last log lines:\n%s", name, c.logTail(name))
		case <-tick.C:
		}
	}
}

func (c *ControlPlane) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, name+".log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// Config returns a rest.Config for the admin user, with a generous client
// rate limit so that tests and benchmarks are not throttled client-side.
func (c *ControlPlane) Config() *rest.Config {
	return &rest.Config{
		Host:            c.URL,
		BearerToken:     c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caData},
		QPS:             1000,
		Burst:           2000,
	}
}

// ConfigForToken returns a rest.Config that authenticates with token.
func (c *ControlPlane) ConfigForToken(token string) *rest.Config {
	cfg := c.Config()
	cfg.BearerToken = token
	return cfg
}

// Clientset returns an admin clientset.
func (c *ControlPlane) Clientset() (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(c.Config())
}

// Kubectl returns the path of the kubectl binary built at the control
// plane's version.
func (c *ControlPlane) Kubectl() string { return filepath.Join(c.Bin, "kubectl") }

func (c *ControlPlane) writeKubeconfig() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["leasehold"] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: c.caData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: c.adminToken}
	cfg.Contexts["leasehold"] = &clientcmdapi.Context{Cluster: "leasehold", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "leasehold"
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, c.Kubeconfig); err != nil {
		return fmt.Errorf("testenv: write kubeconfig: %w", err)
	}
	return nil
}

// RestartAPIServer stops kube-apiserver (SIGTERM, then SIGKILL) and starts it
// again with the same address and storage; it returns once it is ready.
func (c *ControlPlane) RestartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	p := c.apiserver
	c.mu.Unlock()
	stopProc(p)
	return c.startAPIServer(ctx)
}

// RestartEtcd stops etcd (SIGTERM, then SIGKILL) and starts it again on the
// same data; it returns once etcd is healthy.
func (c *ControlPlane) RestartEtcd(ctx context.Context) error {
	c.mu.Lock()
	p := c.etcd
	c.mu.Unlock()
	stopProc(p)
	return c.startEtcd(ctx)
}

// CPUTime returns the CPU time (user and system) that kube-apiserver and
// etcd have used since they started, as /proc counts it.
func (c *ControlPlane) CPUTime() (apiserver, etcd time.Duration, err error) {
	c.mu.Lock()
	api, e := c.apiserver, c.etcd
	c.mu.Unlock()
	if api == nil || e == nil {
		return 0, 0, errors.New("testenv: the control plane is stopped")
	}
	if apiserver, err = cpuTime(api.cmd.Process.Pid); err != nil {
		return 0, 0, err
	}
	etcd, err = cpuTime(e.cmd.Process.Pid)
	return apiserver, etcd, err
}

// cpuTime reads utime + stime of process pid from /proc/<pid>/stat, in
// clock ticks of 1/100 s (USER_HZ, which Linux fixes at 100 for /proc).
func cpuTime(pid int) (time.Duration, error) {
	f, err := testproc.Stat(pid)
	if err != nil {
		return 0, fmt.Errorf("testenv: %w", err)
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("testenv: /proc/%d/stat: %d fields after the command name, want at least 13", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime: fields 14 and 15
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("testenv: /proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// Stop stops kube-apiserver and etcd, waits for them to exit and removes a
// temporary Dir. It is safe to call more than once.
func (c *ControlPlane) Stop() error {
	c.stopProcs()
	if c.removeDir {
		return os.RemoveAll(c.Dir)
	}
	return nil
}

// stopProcs stops kube-apiserver and etcd, if running, and waits for them.
func (c *ControlPlane) stopProcs() {
	c.mu.Lock()
	api, etcd := c.apiserver, c.etcd
	c.apiserver, c.etcd = nil, nil
	c.mu.Unlock()
	stopProc(api)
	stopProc(etcd)
}

func stopProc(p *proc) {
	if p == nil {
		return
	}
	p.stopping.Store(true)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
		return
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// overrideFlags appends extra to args, first dropping every flag of args
// that extra sets again (list flags would otherwise accumulate).
func overrideFlags(args, extra []string) []string {
	name := func(a string) string { n, _, _ := strings.Cut(a, "="); return n }
	var out []string
	for _, a := range args {
		if !slices.ContainsFunc(extra, func(e string) bool { return name(e) == name(a) }) {
			out = append(out, a)
		}
	}
	return append(out, extra...)
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testenv: find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func writeServiceAccountKey(dir string) (key, pub string, err error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", fmt.Errorf("testenv: service-account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return "", "", fmt.Errorf("testenv: service-account key: %w", err)
	}
	key, pub = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	err = errors.Join(
		os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600),
		os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600),
	)
	if err != nil {
		return "", "", fmt.Errorf("testenv: %w", err)
	}
	return key, pub, nil
}
