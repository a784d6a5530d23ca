package podwitness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/leasehold/leasehold/lease"
)

// The environment a container gets from the downward API (metadata.name,
// metadata.namespace, metadata.uid) and, as a literal, its own container
// name, which the downward API does not offer.
const (
	EnvPodName      = "POD_NAME"
	EnvPodNamespace = "POD_NAMESPACE"
	EnvPodUID       = "POD_UID"
	EnvContainer    = "LEASEHOLD_CONTAINER"
)

// ErrNotInPod is matched by Detect's error when the environment does not
// name a Pod: the process is not in one, or its manifest does not pass
// the variables. Pod-aware takeover is then off for this process's terms.
var ErrNotInPod = errors.New("podwitness: not running in a Pod (" + EnvPodName + ", " + EnvPodNamespace + ", " + EnvPodUID + " and " + EnvContainer + " not all set)")

// containerIDPattern finds a runtime's 64-hex container ID in a cgroup
// path: ".../pod<uid>/<id>" (cgroupfs), "cri-containerd-<id>.scope",
// "docker-<id>.scope", "crio-<id>.scope" (systemd).
var containerIDPattern = regexp.MustCompile(`(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$`)

// ContainerIDFromCgroup returns the container ID in a /proc/self/cgroup
// listing, "" when none is visible (cgroup v2 with a private cgroup
// namespace shows only "0::/").
func ContainerIDFromCgroup(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if m := containerIDPattern.FindStringSubmatch(parts[2]); m != nil {
			return m[1]
		}
	}
	return ""
}

// Detect returns the container instance this process runs in, as the
// kubelet reports it in the Pod's status. The container ID comes from the
// process's own cgroup, so it is this run's, never a previous run's that a
// status not yet updated still shows; Detect waits (until ctx ends) for
// the kubelet to report it. getenv and cgroup are os.Getenv and
// /proc/self/cgroup outside tests.
func Detect(ctx context.Context, pods corev1client.PodsGetter, getenv func(string) string, cgroup func() (io.ReadCloser, error)) (lease.Instance, error) {
	inst := lease.Instance{
		Namespace: getenv(EnvPodNamespace), Pod: getenv(EnvPodName),
		PodUID: types.UID(getenv(EnvPodUID)), Container: getenv(EnvContainer),
	}
	if inst.Namespace == "" || inst.Pod == "" || inst.PodUID == "" || inst.Container == "" {
		return inst, ErrNotInPod
	}
	if cgroup == nil {
		cgroup = func() (io.ReadCloser, error) { return os.Open("/proc/self/cgroup") }
	}
	f, err := cgroup()
	if err != nil {
		return inst, fmt.Errorf("podwitness: own container ID: %w", err)
	}
	id := ContainerIDFromCgroup(f)
	_ = f.Close()
	if id == "" {
		return inst, errors.New("podwitness: own container ID is not visible in /proc/self/cgroup (a private cgroup namespace?)")
	}
	api := pods.Pods(inst.Namespace)
	for {
		pod, err := api.Get(ctx, inst.Pod, metav1.GetOptions{})
		if err != nil {
			return inst, fmt.Errorf("podwitness: get own pod %s/%s: %w", inst.Namespace, inst.Pod, err)
		}
		if pod.UID != inst.PodUID {
			return inst, fmt.Errorf("podwitness: pod %s/%s has UID %s, but %s says %s", inst.Namespace, inst.Pod, pod.UID, EnvPodUID, inst.PodUID)
		}
		if !hasContainer(pod, inst.Container) {
			return inst, fmt.Errorf("podwitness: %s=%s: pod %s/%s has no container of that name", EnvContainer, inst.Container, inst.Namespace, inst.Pod)
		}
		if cid, ok := reported(pod, inst.Container, id); ok {
			inst.ContainerID = cid
			return inst, nil
		}
		if err := waitReported(ctx, api, inst, pod.ResourceVersion, id); err != nil {
			return inst, err
		}
	}
}

// reported finds container's status whose ID is id ("<runtime>://<id>").
func reported(pod *corev1.Pod, container, id string) (string, bool) {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses} {
		for _, cs := range list {
			if cs.Name == container && strings.HasSuffix(cs.ContainerID, "://"+id) {
				return cs.ContainerID, true
			}
		}
	}
	return "", false
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range list {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

// waitReported watches the Pod from rv until its status reports id, then
// returns nil so the caller reads it again.
func waitReported(ctx context.Context, api corev1client.PodInterface, inst lease.Instance, rv, id string) error {
	wi, err := api.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", inst.Pod).String(), ResourceVersion: rv})
	if err != nil {
		if apierrors.IsForbidden(err) {
			return fmt.Errorf("podwitness: watch own pod %s/%s: %w", inst.Namespace, inst.Pod, err)
		}
		return sleepCtx(ctx, time.Second)
	}
	defer wi.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("podwitness: the kubelet has not reported container %s (%s) of pod %s/%s: %w", inst.Container, id, inst.Namespace, inst.Pod, ctx.Err())
		case ev, ok := <-wi.ResultChan():
			if !ok {
				return nil
			}
			if pod, isPod := ev.Object.(*corev1.Pod); isPod {
				if _, ok := reported(pod, inst.Container, id); ok {
					return nil
				}
			}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
