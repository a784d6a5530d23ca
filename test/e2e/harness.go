//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/internal/image"
	"github.com/leasehold/leasehold/internal/testenv"
)

// The images the tests build and import into the node.
const (
	WorkerImage    = "leasehold.local/worker:e2e"    // leasehold + /app/worker + /app/migrate
	LeaseholdImage = "leasehold.local/leasehold:e2e" // what `make image` builds
	CandidateImage = "leasehold.local/candidate:e2e" // the benchmark's candidate
)

// BuildImages builds the three images into dir and returns their tarballs.
func BuildImages(ctx context.Context, dir string) ([]string, error) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return nil, err
	}
	bins := map[string]string{}
	for _, pkg := range []string{"./cmd/leasehold", "./test/e2e/worker", "./test/e2e/candidate"} {
		bin := filepath.Join(dir, filepath.Base(pkg))
		if err := image.GoBuild(ctx, root, pkg, bin, ""); err != nil {
			return nil, err
		}
		bins[filepath.Base(pkg)] = bin
	}
	specs := map[string]image.Spec{
		WorkerImage: image.Leasehold(bins["leasehold"],
			image.File{Path: "/app/worker", Src: bins["worker"]},
			image.File{Path: "/app/migrate", Src: bins["worker"]}),
		LeaseholdImage: image.Leasehold(bins["leasehold"]),
		CandidateImage: {
			Files:      []image.File{{Path: "/usr/local/bin/candidate", Src: bins["candidate"]}},
			User:       image.NonRoot,
			CACerts:    true,
			Entrypoint: []string{"/usr/local/bin/candidate"},
		},
	}
	var tars []string
	for ref, spec := range specs {
		img, err := image.Build(spec)
		if err != nil {
			return nil, err
		}
		tar := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
		if err := image.WriteTarball(tar, ref, img); err != nil {
			return nil, err
		}
		tars = append(tars, tar)
	}
	return tars, nil
}

// Mono is CLOCK_MONOTONIC in nanoseconds: the clock the worker and candidate
// pods stamp their lines with (pods share the machine's kernel).
func Mono() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// Kustomize applies the kustomization at deploy/<overlay> to namespace ns,
// with the images set to the locally built ones and extra appended to the
// generated kustomization (patches, nameSuffix, ...).
func Kustomize(ctx context.Context, c *testenv.Cluster, ns, overlay, extra string) error {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "leasehold-kustomize-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rel, err := filepath.Rel(dir, filepath.Join(root, "deploy", overlay))
	if err != nil {
		return err
	}
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: %s
resources:
  - %s
images:
  - name: worker
    newName: %s
    newTag: %s
  - name: leasehold
    newName: %s
    newTag: %s
  - name: example.com/app
    newName: %s
    newTag: %s
%s`, ns, rel, repo(WorkerImage), tag(WorkerImage), repo(LeaseholdImage), tag(LeaseholdImage), repo(WorkerImage), tag(WorkerImage), extra)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		return err
	}
	return Kubectl(ctx, c, "apply", "-k", dir)
}

func repo(ref string) string { r, _, _ := strings.Cut(ref, ":"); return r }
func tag(ref string) string  { _, t, _ := strings.Cut(ref, ":"); return t }

// Kubectl runs the cluster's kubectl with args.
func Kubectl(ctx context.Context, c *testenv.Cluster, args ...string) error {
	cmd := exec.CommandContext(ctx, c.Kubectl(), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Event is a "start" or "stop" line of a worker or candidate pod: when its
// leader work began or ended.
type Event struct {
	Pod  string
	Ev   string
	Mono int64
	// Token is the term's fencing token, for a worker of `leasehold run`.
	Token string
	// Shard is the shard of a worker of `leasehold run --shards`, else "".
	Shard string
}

// Recorder follows the logs of every container named container in a
// namespace (each container instance, restarts included) and keeps their
// start and stop lines. Close stops it and waits for its goroutines.
type Recorder struct {
	cs        kubernetes.Interface
	ns        string
	container string
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	mu        sync.Mutex
	events    []Event
	following map[string]bool
}

// Record starts a Recorder.
func Record(ctx context.Context, cs kubernetes.Interface, ns, container string) *Recorder {
	ctx, cancel := context.WithCancel(ctx)
	r := &Recorder{cs: cs, ns: ns, container: container, cancel: cancel, following: map[string]bool{}}
	r.wg.Go(func() { r.watchPods(ctx) })
	return r
}

// Close stops following and waits.
func (r *Recorder) Close() { r.cancel(); r.wg.Wait() }

func (r *Recorder) watchPods(ctx context.Context) {
	for ctx.Err() == nil {
		pods, err := r.cs.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, p := range pods.Items {
				for _, st := range p.Status.ContainerStatuses {
					if st.Name != r.container || st.State.Running == nil {
						continue
					}
					key := p.Name + "/" + st.ContainerID
					r.mu.Lock()
					seen := r.following[key]
					r.following[key] = true
					r.mu.Unlock()
					if !seen {
						r.wg.Go(func() {
							r.follow(ctx, p.Name)
							// A stream that ends while the container still
							// runs (the kubelet restarted) is opened again;
							// lines read twice are kept once.
							r.mu.Lock()
							delete(r.following, key)
							r.mu.Unlock()
						})
					}
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// follow streams one container instance's log until it ends.
func (r *Recorder) follow(ctx context.Context, pod string) {
	s, err := r.cs.CoreV1().Pods(r.ns).GetLogs(pod, &corev1.PodLogOptions{Container: r.container, Follow: true}).Stream(ctx)
	if err != nil {
		return
	}
	defer s.Close()
	sc := bufio.NewScanner(s)
	for sc.Scan() {
		var l struct {
			Ev    string `json:"ev"`
			Mono  int64  `json:"mono"`
			Token string `json:"token"`
			Shard string `json:"shard"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || (l.Ev != "start" && l.Ev != "stop") || l.Mono == 0 {
			continue
		}
		r.mu.Lock()
		if e := (Event{Pod: pod, Ev: l.Ev, Mono: l.Mono, Token: l.Token, Shard: l.Shard}); !slices.Contains(r.events, e) {
			r.events = append(r.events, e)
		}
		r.mu.Unlock()
	}
}

// Events returns the events so far, by time.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := slices.Clone(r.events)
	sort.Slice(ev, func(i, j int) bool { return ev[i].Mono < ev[j].Mono })
	return ev
}

// FirstStartAfter returns the first start at or after mono whose pod is not
// excluded, waiting up to timeout.
func (r *Recorder) FirstStartAfter(ctx context.Context, mono int64, timeout time.Duration, exclude ...string) (Event, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range r.Events() {
			if e.Ev == "start" && e.Mono >= mono && !slices.Contains(exclude, e.Pod) {
				return e, nil
			}
		}
		if time.Now().After(deadline) {
			return Event{}, fmt.Errorf("no leader started work within %s; events: %v", timeout, r.Events())
		}
		select {
		case <-ctx.Done():
			return Event{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Working returns the pods whose work has started and not stopped, from
// the events.
func Working(events []Event) []string {
	var w []string
	for _, e := range events {
		if e.Ev == "start" {
			w = append(w, e.Pod)
		} else if i := slices.Index(w, e.Pod); i >= 0 {
			w = slices.Delete(w, i, i+1)
		}
	}
	return w
}

// Holder returns the Lease's holder ("" if none).
func Holder(ctx context.Context, cs kubernetes.Interface, ns, name string) string {
	l, err := cs.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// Eventually polls cond until it returns true or timeout passes; the last
// message explains the failure.
func Eventually(ctx context.Context, timeout time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %s", timeout, msg)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ctx.Err(), msg)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// RunningPods returns the namespace's pods that are Running and not being
// deleted, with label selector sel.
func RunningPods(ctx context.Context, cs kubernetes.Interface, ns, sel string) []corev1.Pod {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel, FieldSelector: fields.OneTermEqualSelector("status.phase", "Running").String()})
	if err != nil {
		return nil
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// ContainerPID returns the host PID of the main process of a pod's
// container, from the node's containerd.
func ContainerPID(ctx context.Context, c *testenv.Cluster, containerID string) (int, error) {
	id := strings.TrimPrefix(containerID, "containerd://")
	out, err := exec.CommandContext(ctx, "ctr", "--address", c.ContainerdSocket, "-n", "k8s.io", "tasks", "ls").Output()
	if err != nil {
		return 0, fmt.Errorf("ctr tasks ls: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == id {
			var pid int
			if _, err := fmt.Sscan(f[1], &pid); err == nil && pid > 0 {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("container %s has no running task:\n%s", id, out)
}

// Namespace creates a namespace for one test and deletes it at cleanup.
func Namespace(t testing.TB, cs kubernetes.Interface, name string) string {
	t.Helper()
	// A namespace of the same name still being deleted (the same test run
	// again, -count) takes no new pods: wait until it is gone.
	if err := Eventually(t.Context(), 2*time.Minute, func() (bool, string) {
		ns, err := cs.CoreV1().Namespaces().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil || ns.Status.Phase != corev1.NamespaceTerminating {
			return true, ""
		}
		return false, "namespace " + name + " is still being deleted"
	}); err != nil {
		t.Fatal(err)
	}
	if err := testenv.EnsureNamespace(t.Context(), cs, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}
