package lease

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// Snapshot is one observed version of a Lease. It is immutable: the methods
// that change a lease return a new Snapshot.
type Snapshot struct {
	// Namespace and Name identify the Lease; UID tells incarnations apart.
	Namespace, Name string
	UID             types.UID
	// ResourceVersion is the version this snapshot was read at; updates based
	// on it fail with ErrConflict if the Lease has changed since.
	ResourceVersion string
	// Record is the leader-election state in the spec.
	Record Record
	// Token is the fencing token of the current holder's term as recorded by
	// a Leasehold holder (TokenAnnotation), or zero when it is unknown: the
	// lease is not held, the holder is not a Leasehold process, or the
	// record was edited by a foreign writer (see ForeignEdit).
	Token Token
	// ForeignEdit is true when the record names a holder other than the one
	// that took the lease at the same transition count: someone changed
	// holderIdentity without acquiring (kubectl apply, hand-written code).
	// The record's acquire and renew times then belong to the previous
	// holder, not to the one it names.
	ForeignEdit bool
	// OfferedTo is the identity the holder offers the lease to
	// (OfferAnnotation), "" when none: the holder's work has stopped and
	// that identity may take the lease at once.
	OfferedTo string
	// Kind is what a Leasehold lock recorded the Lease as (KindAnnotation),
	// "" when none.
	Kind string
	// Instance is the container instance that took the current term
	// (InstanceAnnotation), nil when the lease is not held, the holder did
	// not publish one, or the record is not credited to it (Token is zero).
	Instance *Instance

	obj *coordinationv1.Lease
}

// Object returns a deep copy of the Lease the snapshot was read from.
func (s *Snapshot) Object() *coordinationv1.Lease { return s.obj.DeepCopy() }

// NewSnapshot builds a Snapshot from a Lease object.
func NewSnapshot(l *coordinationv1.Lease) *Snapshot {
	rec := FromSpec(l.Spec)
	s := &Snapshot{
		Namespace:       l.Namespace,
		Name:            l.Name,
		UID:             l.UID,
		ResourceVersion: l.ResourceVersion,
		Record:          rec,
		obj:             l.DeepCopy(),
	}
	if a, ok := parseTokenAnnotation(l.Annotations[TokenAnnotation]); ok && rec.Held() && a.transitions == rec.Transitions {
		if a.holder == rec.Holder {
			s.Token = a.token
		} else {
			s.ForeignEdit = true
		}
	}
	s.Kind = l.Annotations[KindAnnotation]
	if !s.Token.IsZero() {
		if i, ok := parseInstance(l.Annotations[InstanceAnnotation], rec.Transitions); ok {
			s.Instance = &i
		}
	}
	if rec.Held() {
		s.OfferedTo = parsePreferredAnnotation(l.Annotations[OfferAnnotation], rec.Transitions)
	}
	if rec.PreferredHolder == "" {
		s.Record.PreferredHolder = parsePreferredAnnotation(l.Annotations[PreferredHolderAnnotation], rec.Transitions)
	}
	return s
}

// Client reads and writes one Lease. It holds no cached state and is safe for
// concurrent use.
type Client struct {
	leases    coordinationv1client.LeasesGetter
	namespace string
	name      string
}

// NewClient returns a Client for the Lease namespace/name. leases is usually
// clientset.CoordinationV1().
func NewClient(leases coordinationv1client.LeasesGetter, namespace, name string) (*Client, error) {
	if leases == nil {
		return nil, fmt.Errorf("lease: NewClient: leases getter is nil")
	}
	if namespace == "" || name == "" {
		return nil, fmt.Errorf("lease: NewClient: namespace %q and name %q must both be set", namespace, name)
	}
	return &Client{leases: leases, namespace: namespace, name: name}, nil
}

// Namespace returns the Lease's namespace.
func (c *Client) Namespace() string { return c.namespace }

// Name returns the Lease's name.
func (c *Client) Name() string { return c.name }

func (c *Client) api() coordinationv1client.LeaseInterface { return c.leases.Leases(c.namespace) }

// Get reads the Lease. A missing Lease returns an error matching ErrNotFound.
func (c *Client) Get(ctx context.Context) (*Snapshot, error) {
	l, err := c.api().Get(ctx, c.name, metav1.GetOptions{})
	if err != nil {
		return nil, classify("get", c.namespace, c.name, err)
	}
	return NewSnapshot(l), nil
}

// Create creates the Lease with the record. An existing Lease returns an error
// matching ErrAlreadyExists.
func (c *Client) Create(ctx context.Context, rec Record) (*Snapshot, error) {
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.namespace, Name: c.name},
		Spec:       rec.ToSpec(),
	}
	setPreferredAnnotation(&l.ObjectMeta, rec)
	out, err := c.api().Create(ctx, l, metav1.CreateOptions{})
	if err != nil {
		return nil, classify("create", c.namespace, c.name, err)
	}
	return NewSnapshot(out), nil
}

// Update replaces the record of the Lease in base, on the condition that the
// Lease is still at base.ResourceVersion (else ErrConflict). Metadata, labels
// and annotations of base are kept. A non-zero token is recorded in
// TokenAnnotation; the preferred holder in spec.preferredHolder and in
// PreferredHolderAnnotation.
func (c *Client) Update(ctx context.Context, base *Snapshot, rec Record, tok Token) (*Snapshot, error) {
	if base == nil || base.obj == nil {
		return nil, fmt.Errorf("lease: update %s/%s: no base snapshot", c.namespace, c.name)
	}
	l := base.obj.DeepCopy()
	l.Spec = rec.ToSpec()
	setPreferredAnnotation(&l.ObjectMeta, rec)
	if rec.Holder != base.Record.Holder || rec.Transitions != base.Record.Transitions {
		delete(l.Annotations, OfferAnnotation) // a new term ends any offer
	}
	if !tok.IsZero() {
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		l.Annotations[TokenAnnotation] = TokenAnnotationValue(tok, rec.Transitions, rec.Holder)
	}
	out, err := c.api().Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		return nil, classify("update", c.namespace, c.name, err)
	}
	return NewSnapshot(out), nil
}

// WatchError turns the Status of a watch Error event into an *APIError of
// the right kind (ErrGone for a version that is too old, ...).
func (c *Client) WatchError(s *metav1.Status) error {
	return classify("watch", c.namespace, c.name, statusError(s))
}

// Watch watches the Lease from resourceVersion ("" means from now, after the
// current state). Events carry *coordinationv1.Lease objects. A watch that
// fails because resourceVersion is too old returns an error matching ErrGone,
// either here or as an Error event.
func (c *Client) Watch(ctx context.Context, resourceVersion string) (watch.Interface, error) {
	w, err := c.api().Watch(ctx, metav1.ListOptions{
		FieldSelector:       fields.OneTermEqualSelector("metadata.name", c.name).String(),
		ResourceVersion:     resourceVersion,
		AllowWatchBookmarks: true,
	})
	if err != nil {
		return nil, classify("watch", c.namespace, c.name, err)
	}
	return w, nil
}
