package lease

import (
	"context"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// CreateLabelled creates the Lease with the record, labels and annotations.
// An existing Lease returns an error matching ErrAlreadyExists.
func (c *Client) CreateLabelled(ctx context.Context, rec Record, labels, annotations map[string]string) (*Snapshot, error) {
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.namespace, Name: c.name, Labels: labels, Annotations: annotations},
		Spec:       rec.ToSpec(),
	}
	setPreferredAnnotation(&l.ObjectMeta, rec)
	out, err := c.api().Create(ctx, l, metav1.CreateOptions{})
	if err != nil {
		return nil, classify("create", c.namespace, c.name, err)
	}
	return NewSnapshot(out), nil
}

// Delete deletes the Lease if it is still the incarnation uid (any, when
// uid is ""). A missing Lease returns an error matching ErrNotFound; another
// incarnation one matching ErrConflict.
func (c *Client) Delete(ctx context.Context, uid types.UID) error {
	opts := metav1.DeleteOptions{}
	if uid != "" {
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	}
	if err := c.api().Delete(ctx, c.name, opts); err != nil {
		return classify("delete", c.namespace, c.name, err)
	}
	return nil
}

// WithLabel returns a copy of base whose object carries the label key=value,
// for the next Update on it.
func WithLabel(base *Snapshot, key, value string) *Snapshot {
	cp := *base
	cp.obj = base.obj.DeepCopy()
	if cp.obj.Labels == nil {
		cp.obj.Labels = map[string]string{}
	}
	cp.obj.Labels[key] = value
	return &cp
}

// WithoutAnnotation returns a copy of base without the annotation key.
func WithoutAnnotation(base *Snapshot, key string) *Snapshot {
	cp := *base
	cp.obj = base.obj.DeepCopy()
	delete(cp.obj.Annotations, key)
	return &cp
}

// Label returns the value of a label of the Lease.
func (s *Snapshot) Label(key string) string { return s.obj.Labels[key] }

// Annotation returns the value of an annotation of the Lease.
func (s *Snapshot) Annotation(key string) string { return s.obj.Annotations[key] }

// WatchSelected watches every Lease of namespace whose labels match
// selector. With initial true the watch starts with the current objects
// (ADDED events, then a bookmark annotated k8s.io/initial-events-end), so
// it needs only the watch verb (no list); resourceVersion must then be ""
// (served from the apiserver's watch cache as it is, which may lag by the
// cache's delay: callers that need the latest state rely on their
// conditional writes).
// Errors are classified as Client's are.
func WatchSelected(ctx context.Context, leases coordinationv1client.LeasesGetter, namespace, selector, resourceVersion string, initial bool) (watch.Interface, error) {
	opts := metav1.ListOptions{LabelSelector: selector, ResourceVersion: resourceVersion, AllowWatchBookmarks: true}
	if initial {
		yes := true
		opts.SendInitialEvents = &yes
		opts.ResourceVersionMatch = metav1.ResourceVersionMatchNotOlderThan
		opts.ResourceVersion = "0" // any: no wait for the cache to catch up
	}
	w, err := leases.Leases(namespace).Watch(ctx, opts)
	if err != nil {
		return nil, classify("watch", namespace, "-l "+selector, err)
	}
	return w, nil
}

// WatchStatusError turns the Status of a watch Error event on a selected
// watch into an *APIError of the right kind.
func WatchStatusError(namespace, selector string, s *metav1.Status) error {
	return classify("watch", namespace, "-l "+selector, statusError(s))
}
