package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// errAppNotReady ends a term whose app stopped being ready (--follow-*).
var errAppNotReady = errors.New("the app is not ready")

// readiness is whether the app that run follows is ready: known from its
// container's status (--follow-container) or a URL (--follow-url). Safe for
// concurrent use.
type readiness struct {
	out  io.Writer
	what string // "container app" or "GET http://..."

	mu      sync.Mutex
	ready   bool
	known   bool
	why     string // why not ready, as last printed
	changed chan struct{}
}

func newReadiness(out io.Writer, what string) *readiness {
	return &readiness{out: out, what: what, changed: make(chan struct{})}
}

// state returns whether the app is ready and a channel closed at the next
// change.
func (r *readiness) state() (bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready, r.changed
}

// set records an observation, printing each change.
func (r *readiness) set(ready bool, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.known && ready == r.ready && (ready || why == r.why) {
		return
	}
	switch {
	case ready:
		fmt.Fprintf(r.out, "leasehold: %s is ready\n", r.what)
	default:
		fmt.Fprintf(r.out, "leasehold: %s is not ready (%s); not leading until it is\n", r.what, why)
	}
	r.known, r.ready, r.why = true, ready, why
	close(r.changed)
	r.changed = make(chan struct{})
}

// awaitReady blocks until the app is ready (true) or ctx ends (false).
func (r *readiness) awaitReady(ctx context.Context) bool {
	for {
		ready, changed := r.state()
		if ready {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-changed:
		}
	}
}

// resignWhenNotReady cancels a campaign (and its term) with errAppNotReady
// as soon as the app is not ready, until ctx ends.
func (r *readiness) resignWhenNotReady(ctx context.Context, stop context.CancelCauseFunc) {
	for {
		ready, changed := r.state()
		if !ready {
			stop(errAppNotReady)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// pollURL checks u every interval until ctx ends: ready on a 2xx answer.
func (r *readiness) pollURL(ctx context.Context, u string, interval time.Duration) {
	client := &http.Client{Timeout: min(interval, 2*time.Second)}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err == nil {
			var resp *http.Response
			if resp, err = client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
				_ = resp.Body.Close()
				if resp.StatusCode < 200 || resp.StatusCode > 299 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.set(false, err.Error())
		} else {
			r.set(true, "")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ownPod names this process's Pod from the downward API variables.
func ownPod() (ns, name string, err error) {
	ns, name = os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME")
	if ns == "" || name == "" {
		return "", "", errors.New("--follow-container needs POD_NAME and POD_NAMESPACE (downward API, as in deploy/sidecar) to find this Pod")
	}
	return ns, name, nil
}

// containerReady reads container's readiness from the Pod's status.
func containerReady(pod *corev1.Pod, container string) (bool, string) {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != container {
			continue
		}
		switch {
		case cs.Ready:
			return true, ""
		case cs.State.Waiting != nil:
			return false, "waiting: " + cs.State.Waiting.Reason
		case cs.State.Terminated != nil:
			return false, "terminated: " + cs.State.Terminated.Reason
		}
		return false, "running, readiness probe failing"
	}
	return false, "no status reported yet"
}

// checkContainer reads the Pod once, so that a missing permission or a
// wrong container name is reported at start.
func checkContainer(ctx context.Context, pods corev1client.PodsGetter, ns, name, container string) error {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	pod, err := pods.Pods(ns).Get(rctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("--follow-container: RBAC must allow get and watch on pods in namespace %q to read this Pod's status: %w", ns, err)
	case err != nil:
		return fmt.Errorf("--follow-container: read pod %s/%s: %w", ns, name, err)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == container {
			return nil
		}
	}
	return fmt.Errorf("--follow-container %s: pod %s/%s has no container of that name", container, ns, name)
}

// watchContainer follows container's readiness in the Pod's status until
// ctx ends, re-reading after errors every retry.
func (r *readiness) watchContainer(ctx context.Context, pods corev1client.PodsGetter, ns, name, container string, retry time.Duration) {
	api := pods.Pods(ns)
	for ctx.Err() == nil {
		pod, err := api.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			r.set(containerReady(pod, container))
			err = r.followPod(ctx, api, name, container, pod.ResourceVersion)
		}
		if err != nil && ctx.Err() == nil {
			r.set(false, "cannot read the Pod: "+err.Error())
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

func (r *readiness) followPod(ctx context.Context, api corev1client.PodInterface, name, container, rv string) error {
	w, err := api.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: rv})
	if err != nil {
		return err
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if pod, ok := ev.Object.(*corev1.Pod); ok {
			r.set(containerReady(pod, container))
		}
	}
	return nil // closed: read again
}

// checkFollowURL validates --follow-url.
func checkFollowURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Errorf("--follow-url %q: want an http:// or https:// URL, for example http://localhost:8081/ready", u)
	}
	return nil
}
