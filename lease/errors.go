package lease

import (
	"errors"
	"fmt"
	"net"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Sentinel errors. API failures are returned as *APIError, which matches the
// sentinel for its kind with errors.Is and unwraps to the apiserver's error.
var (
	// ErrNotFound: the Lease does not exist.
	ErrNotFound = errors.New("lease: not found")
	// ErrAlreadyExists: a create found the Lease already there.
	ErrAlreadyExists = errors.New("lease: already exists")
	// ErrConflict: the Lease changed since it was read (HTTP 409); re-read it.
	ErrConflict = errors.New("lease: conflict, the lease changed since it was read")
	// ErrForbidden: RBAC denied the request; APIError.Verb names the verb.
	ErrForbidden = errors.New("lease: forbidden")
	// ErrUnauthorized: the credentials were rejected (HTTP 401).
	ErrUnauthorized = errors.New("lease: unauthorized")
	// ErrInvalid: the apiserver rejected the object as invalid.
	ErrInvalid = errors.New("lease: invalid")
	// ErrUnavailable: the apiserver could not be reached or did not answer in
	// time. Transient: retrying may succeed.
	ErrUnavailable = errors.New("lease: apiserver unavailable")
	// ErrGone: a watch's resourceVersion is too old (HTTP 410); re-list.
	ErrGone = errors.New("lease: watch resource version too old")
)

// APIError is a failed request on one Lease.
type APIError struct {
	// Verb is the Kubernetes verb of the request: get, create, update, watch.
	Verb string
	// Namespace and Name identify the Lease.
	Namespace, Name string
	// Kind is one of the sentinel errors above, or nil when unclassified.
	Kind error
	// Err is the underlying error from client-go.
	Err error
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lease: %s %s/%s: ", e.Verb, e.Namespace, e.Name)
	switch e.Kind {
	case ErrForbidden:
		fmt.Fprintf(&b, "forbidden: RBAC must allow verb %q on resource \"leases\" (API group coordination.k8s.io) in namespace %q: ", e.Verb, e.Namespace)
	case nil:
	default:
		b.WriteString(strings.TrimPrefix(e.Kind.Error(), "lease: "))
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the client-go error.
func (e *APIError) Unwrap() error { return e.Err }

// Is matches the sentinel for the error's kind.
func (e *APIError) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// Permanent reports whether retrying the same request cannot help without a
// change elsewhere (RBAC, credentials, the request itself).
func Permanent(err error) bool {
	return errors.Is(err, ErrForbidden) || errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrInvalid)
}

// classify wraps a client-go error in an *APIError of the right kind.
func classify(verb, namespace, name string, err error) error {
	if err == nil {
		return nil
	}
	e := &APIError{Verb: verb, Namespace: namespace, Name: name, Err: err}
	var netErr net.Error
	switch {
	case apierrors.IsNotFound(err):
		e.Kind = ErrNotFound
	case apierrors.IsAlreadyExists(err):
		e.Kind = ErrAlreadyExists
	case apierrors.IsConflict(err):
		e.Kind = ErrConflict
	case apierrors.IsForbidden(err):
		e.Kind = ErrForbidden
	case apierrors.IsUnauthorized(err):
		e.Kind = ErrUnauthorized
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		e.Kind = ErrInvalid
	case apierrors.IsGone(err), apierrors.IsResourceExpired(err):
		e.Kind = ErrGone
	case apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), apierrors.IsServiceUnavailable(err),
		apierrors.IsTooManyRequests(err), apierrors.IsInternalError(err), apierrors.IsUnexpectedServerError(err),
		errors.As(err, &netErr), isConnError(err):
		e.Kind = ErrUnavailable
	}
	return e
}

func isConnError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "connection reset") ||
		strings.Contains(s, "EOF") || strings.Contains(s, "http2: ")
}

func statusError(s *metav1.Status) error { return &apierrors.StatusError{ErrStatus: *s} }

// Classify wraps an error from a request on Leases (verb: get, create,
// update, watch) in an *APIError of the right kind. name may be a label
// selector for a watch of many Leases. A *metav1.Status from a watch's Error
// event is accepted as err's Status via StatusError.
func Classify(verb, namespace, name string, err error) error {
	return classify(verb, namespace, name, err)
}

// StatusError turns the Status of a watch Error event into an error that
// Classify recognises.
func StatusError(s *metav1.Status) error { return statusError(s) }
