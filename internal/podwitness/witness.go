package podwitness

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// Witness follows the Pod of the instance that holds the observed Lease
// and records the kubelet's evidence that the instance stopped. It is a
// holder.Witness: give it to the Candidate that follows the same Observer.
// Run must be called for it to learn anything; until then, and whenever it
// cannot read Pods, it confirms nothing.
type Witness struct {
	pods  corev1client.PodsGetter
	obs   *holder.Observer
	clock clock.Clock
	retry time.Duration

	mu       sync.Mutex
	self     *lease.Instance // not watched: this process's own instance
	stopped  *lease.Instance // the last instance confirmed stopped
	disabled error           // why Pods cannot be read, nil while they can
}

// New returns a Witness of the holders of obs's Lease. retry is the wait
// between attempts after an error.
func New(pods corev1client.PodsGetter, obs *holder.Observer, clk clock.Clock, retry time.Duration) *Witness {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Witness{pods: pods, obs: obs, clock: clk, retry: retry}
}

// SetSelf names this process's own instance, which the Witness never needs
// evidence about.
func (w *Witness) SetSelf(inst *lease.Instance) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.self = inst
}

// Stopped reports whether the kubelet confirmed that inst terminated.
func (w *Witness) Stopped(inst lease.Instance) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopped != nil && *w.stopped == inst
}

// Disabled returns why the Witness cannot read Pods (RBAC), nil while it can.
func (w *Witness) Disabled() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.disabled
}

func (w *Witness) confirm(inst lease.Instance) {
	w.mu.Lock()
	w.stopped = &inst
	w.mu.Unlock()
	w.obs.Poke() // invariant 1 of holder: the evidence first, then the wake-up
}

// ErrForbidden is matched by what Run returns when RBAC does not allow
// get or watch on the holder's Pods.
var ErrForbidden = errors.New("podwitness: may not read Pods")

// Run follows the holders' Pods until ctx ends (nil) or Pods may not be
// read (an error matching ErrForbidden; Stopped stays false from then on,
// and the lease duration applies as without a Witness).
func (w *Witness) Run(ctx context.Context) error {
	for {
		st, changed := w.obs.State()
		target := w.targetOf(st)
		if target == nil {
			if err := waitCh(ctx, changed); err != nil {
				return nil
			}
			continue
		}
		err := w.follow(ctx, *target)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			w.mu.Lock()
			w.disabled = err
			w.mu.Unlock()
			return err
		}
	}
}

// targetOf is the instance to follow in st: a credited, published instance
// that is not this process's and not already confirmed stopped.
func (w *Witness) targetOf(st holder.State) *lease.Instance {
	if st.Lease == nil || st.Lease.Instance == nil {
		return nil
	}
	inst := *st.Lease.Instance
	w.mu.Lock()
	defer w.mu.Unlock()
	if (w.self != nil && inst == *w.self) || (w.stopped != nil && *w.stopped == inst) {
		return nil
	}
	return &inst
}

// follow watches inst's Pod until the evidence is found, the Lease names
// another instance, or ctx ends. It returns an error only when Pods may
// not be read.
func (w *Witness) follow(ctx context.Context, inst lease.Instance) error {
	api := w.pods.Pods(inst.Namespace)
	for {
		st, changed := w.obs.State()
		if t := w.targetOf(st); t == nil || *t != inst {
			return nil
		}
		pod, err := api.Get(ctx, inst.Pod, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return w.untilChange(ctx, changed) // gone without evidence: expiry
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
			return fmt.Errorf("%w: get pod %s/%s: %v", ErrForbidden, inst.Namespace, inst.Pod, err)
		case err != nil:
			if err := w.sleep(ctx, changed); err != nil {
				return nil
			}
			continue
		}
		if Confirms(pod, inst) {
			w.confirm(inst)
			return nil
		}
		if pod.UID != inst.PodUID {
			return w.untilChange(ctx, changed) // another Pod of that name
		}
		done, err := w.watch(ctx, api, inst, pod.ResourceVersion, changed)
		if done || err != nil {
			return err
		}
	}
}

// watch follows the Pod from rv. done is true once there is nothing more
// to learn about inst (evidence found, Pod deleted, the Lease moved on).
func (w *Witness) watch(ctx context.Context, api corev1client.PodInterface, inst lease.Instance, rv string, changed <-chan struct{}) (done bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wi, err := api.Watch(wctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", inst.Pod).String(),
		ResourceVersion: rv, AllowWatchBookmarks: true,
	})
	switch {
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return true, fmt.Errorf("%w: watch pod %s/%s: %v", ErrForbidden, inst.Namespace, inst.Pod, err)
	case err != nil:
		return false, w.sleep(ctx, changed)
	}
	defer wi.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case <-changed:
			st, next := w.obs.State()
			if t := w.targetOf(st); t == nil || *t != inst {
				return true, nil
			}
			changed = next
		case ev, ok := <-wi.ResultChan():
			if !ok || ev.Type == watch.Error {
				return false, nil // re-read, then watch again
			}
			pod, isPod := ev.Object.(*corev1.Pod)
			if !isPod {
				continue
			}
			if Confirms(pod, inst) {
				w.confirm(inst)
				return true, nil
			}
			if ev.Type == watch.Deleted {
				// Deleted while the last status still showed the
				// instance alive (a force delete): no evidence.
				return true, w.untilChange(ctx, changed)
			}
		}
	}
}

// untilChange waits for the observed Lease to change (or ctx to end).
func (w *Witness) untilChange(ctx context.Context, changed <-chan struct{}) error {
	_ = waitCh(ctx, changed)
	return nil
}

// sleep waits one retry interval, less if the Lease changes; it returns
// ctx's error if ctx ends.
func (w *Witness) sleep(ctx context.Context, changed <-chan struct{}) error {
	t := w.clock.NewTimer(w.retry)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-t.C():
	}
	return nil
}

func waitCh(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ch:
		return nil
	}
}
