package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/tools/reference"
	"k8s.io/klog/v2"
)

// Events. `run` records the elector's LeaderElection Events ("X became
// leader", "X stopped leading") on the Lease when RBAC lets it create
// events in the Lease's namespace, and records nothing otherwise: the
// minimal Role (deploy/base) has no rule on events, and needs none.

const (
	eventQueue        = 16               // Events waiting to be written; more are dropped
	eventWriteTimeout = 5 * time.Second  // one create
	eventFlushTimeout = 10 * time.Second // what stop waits for queued Events
)

// eventRecorder is a record.EventRecorder whose methods queue the Event and
// return at once (they never block the elector); one goroutine, which stop
// waits for, writes them. The first write asks the apiserver
// (SelfSubjectAccessReview) whether Events may be created; if not, or if
// it cannot tell, nothing is written.
type eventRecorder struct {
	cs     kubernetes.Interface
	ns     string
	source corev1.EventSource
	queue  chan *corev1.Event
	done   chan struct{}

	mu     sync.Mutex
	closed bool // stop was called: no more Events are queued
}

var _ record.EventRecorder = (*eventRecorder)(nil)

// startEventRecorder starts the recorder of Events in namespace ns; stop
// writes what is queued (for at most eventFlushTimeout) and returns when
// its goroutine has ended.
func startEventRecorder(cs kubernetes.Interface, ns string) (rec *eventRecorder, stop func()) {
	host, _ := os.Hostname()
	rec = &eventRecorder{
		cs: cs, ns: ns,
		source: corev1.EventSource{Component: "leasehold", Host: host},
		queue:  make(chan *corev1.Event, eventQueue),
		done:   make(chan struct{}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	go rec.write(ctx)
	return rec, func() {
		rec.mu.Lock()
		rec.closed = true
		close(rec.queue)
		rec.mu.Unlock()
		select {
		case <-rec.done:
		case <-time.After(eventFlushTimeout):
			cancel()
			<-rec.done
		}
		cancel()
	}
}

func (r *eventRecorder) write(ctx context.Context) {
	defer close(r.done)
	allowed, asked := false, false
	for ev := range r.queue {
		if !asked {
			allowed, asked = r.allowed(ctx), true
		}
		if !allowed || ctx.Err() != nil {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, eventWriteTimeout)
		_, err := r.cs.CoreV1().Events(ev.Namespace).Create(wctx, ev, metav1.CreateOptions{})
		cancel()
		if err != nil {
			klog.V(1).InfoS("could not record an Event", "reason", ev.Reason, "message", ev.Message, "err", err)
		}
	}
}

// allowed asks whether this process may create Events in the namespace.
func (r *eventRecorder) allowed(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, eventWriteTimeout)
	defer cancel()
	review, err := r.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: r.ns, Verb: "create", Resource: "events",
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		klog.V(1).InfoS("not recording Events: cannot tell whether RBAC allows creating them", "namespace", r.ns, "err", err)
		return false
	}
	if !review.Status.Allowed {
		klog.V(1).InfoS("not recording Events: RBAC does not allow creating them", "namespace", r.ns)
	}
	return review.Status.Allowed
}

// Event queues an Event about obj; it is dropped when the queue is full.
func (r *eventRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	r.record(obj, nil, eventtype, reason, message)
}

// Eventf is Event with a formatted message.
func (r *eventRecorder) Eventf(obj runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	r.record(obj, nil, eventtype, reason, fmt.Sprintf(messageFmt, args...))
}

// AnnotatedEventf is Eventf with annotations on the Event.
func (r *eventRecorder) AnnotatedEventf(obj runtime.Object, annotations map[string]string, eventtype, reason, messageFmt string, args ...any) {
	r.record(obj, annotations, eventtype, reason, fmt.Sprintf(messageFmt, args...))
}

func (r *eventRecorder) record(obj runtime.Object, annotations map[string]string, eventtype, reason, message string) {
	ref, err := reference.GetReference(scheme.Scheme, obj)
	if err != nil {
		klog.V(1).InfoS("not recording an Event: no reference to its object", "reason", reason, "err", err)
		return
	}
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()), Namespace: ref.Namespace, Annotations: annotations},
		InvolvedObject: *ref,
		Reason:         reason,
		Message:        message,
		Type:           eventtype,
		Source:         r.source,
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	select {
	case r.queue <- ev:
	default:
		klog.V(1).InfoS("dropped an Event: too many waiting", "reason", reason, "message", message)
	}
}
