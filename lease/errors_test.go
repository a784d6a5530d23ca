package lease_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/lease"
)

var (
	leasesGR  = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}
	sentinels = []error{
		lease.ErrNotFound, lease.ErrAlreadyExists, lease.ErrConflict, lease.ErrForbidden,
		lease.ErrUnauthorized, lease.ErrInvalid, lease.ErrUnavailable, lease.ErrGone,
	}
)

// newFakeClient returns a fake API server and a Client for ns/lock on it.
func newFakeClient(t *testing.T) (*fakelease.Server, *lease.Client) {
	t.Helper()
	srv := fakelease.New()
	c, err := lease.NewClient(srv, "ns", "lock")
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return srv, c
}

// callVerb makes one request with verb through c and returns its error.
func callVerb(ctx context.Context, t *testing.T, c *lease.Client, verb string) error {
	t.Helper()
	switch verb {
	case "get":
		_, err := c.Get(ctx)
		return err
	case "create":
		_, err := c.Create(ctx, lease.Record{})
		return err
	case "update":
		base, err := c.Get(ctx)
		if err != nil {
			t.Fatalf("get before update: %v", err)
		}
		_, err = c.Update(ctx, base, base.Record, 0)
		return err
	case "watch":
		w, err := c.Watch(ctx, "")
		if err == nil {
			w.Stop()
		}
		return err
	}
	t.Fatalf("unknown verb %q", verb)
	return nil
}

func TestErrorClassification(t *testing.T) {
	connRefused := &url.Error{Op: "Get", URL: "https://10.0.0.1:6443/apis/coordination.k8s.io/v1/namespaces/ns/leases/lock",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	tests := []struct {
		name      string
		err       error
		want      error // nil: unclassified
		permanent bool
	}{
		{"NotFound", apierrors.NewNotFound(leasesGR, "lock"), lease.ErrNotFound, false},
		{"AlreadyExists", apierrors.NewAlreadyExists(leasesGR, "lock"), lease.ErrAlreadyExists, false},
		{"Conflict", apierrors.NewConflict(leasesGR, "lock", errors.New("the object has been modified")), lease.ErrConflict, false},
		{"Forbidden", apierrors.NewForbidden(leasesGR, "lock", errors.New(`User "system:serviceaccount:ns:sa" cannot get resource "leases"`)), lease.ErrForbidden, true},
		{"Unauthorized", apierrors.NewUnauthorized("Unauthorized"), lease.ErrUnauthorized, true},
		{"Invalid", apierrors.NewInvalid(schema.GroupKind{Group: "coordination.k8s.io", Kind: "Lease"}, "lock", nil), lease.ErrInvalid, true},
		{"BadRequest", apierrors.NewBadRequest("bad"), lease.ErrInvalid, true},
		{"Gone", apierrors.NewGone("gone"), lease.ErrGone, false},
		{"ResourceExpired", apierrors.NewResourceExpired("too old resource version: 1 (200)"), lease.ErrGone, false},
		{"bare 410 status", &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 410}}, lease.ErrGone, false},
		{"ServiceUnavailable", apierrors.NewServiceUnavailable("try later"), lease.ErrUnavailable, false},
		{"Timeout (504)", apierrors.NewTimeoutError("timed out", 1), lease.ErrUnavailable, false},
		{"ServerTimeout", apierrors.NewServerTimeout(leasesGR, "update", 1), lease.ErrUnavailable, false},
		{"TooManyRequests", apierrors.NewTooManyRequests("slow down", 1), lease.ErrUnavailable, false},
		{"InternalError", apierrors.NewInternalError(errors.New("etcdserver: leader changed")), lease.ErrUnavailable, false},
		{"502 from a proxy", apierrors.NewGenericServerResponse(502, "get", leasesGR, "lock", "", 0, true), lease.ErrUnavailable, false},
		{"connection refused (url.Error)", connRefused, lease.ErrUnavailable, false},
		{"connection refused (text only)", errors.New("dial tcp 10.0.0.1:6443: connect: connection refused"), lease.ErrUnavailable, false},
		{"connection reset", errors.New("read tcp 10.0.0.2:51234->10.0.0.1:6443: read: connection reset by peer"), lease.ErrUnavailable, false},
		{"net.OpError", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, lease.ErrUnavailable, false},
		{"DNS error", &net.DNSError{Err: "no such host", Name: "apiserver.invalid", IsNotFound: true}, lease.ErrUnavailable, false},
		{"wrapped net error", fmt.Errorf("request failed: %w", &net.DNSError{Err: "i/o timeout", Name: "x", IsTimeout: true}), lease.ErrUnavailable, false},
		{"unexpected EOF", io.ErrUnexpectedEOF, lease.ErrUnavailable, false},
		{"http2 connection lost", errors.New("http2: client connection lost"), lease.ErrUnavailable, false},
		{"context deadline", context.DeadlineExceeded, lease.ErrUnavailable, false},
		{"context canceled", context.Canceled, nil, false},
		{"unknown error", errors.New("boom"), nil, false},
		{"MethodNotSupported", apierrors.NewMethodNotSupported(leasesGR, "patch"), nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := newFakeClient(t)
			srv.Fail("get", func(string) error { return tc.err })
			err := callVerb(t.Context(), t, c, "get")
			if err == nil {
				t.Fatal("Get succeeded, want an error")
			}
			for _, s := range sentinels {
				if got := errors.Is(err, s); got != (s == tc.want) {
					t.Errorf("errors.Is(err, %q) = %t, want %t (err: %v)", s, got, s == tc.want, err)
				}
			}
			if got := lease.Permanent(err); got != tc.permanent {
				t.Errorf("Permanent() = %t, want %t", got, tc.permanent)
			}

			var apiErr *lease.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("errors.As(%T, *APIError) = false", err)
			}
			if apiErr.Verb != "get" || apiErr.Namespace != "ns" || apiErr.Name != "lock" || apiErr.Kind != tc.want {
				t.Errorf("APIError = {Verb %q, Namespace %q, Name %q, Kind %v}, want {get, ns, lock, %v}",
					apiErr.Verb, apiErr.Namespace, apiErr.Name, apiErr.Kind, tc.want)
			}
			if apiErr.Err != tc.err || errors.Unwrap(err) != tc.err {
				t.Errorf("APIError does not unwrap to the original error: Err %v, Unwrap %v", apiErr.Err, errors.Unwrap(err))
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("errors.Is(err, original) = false")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "lease: get ns/lock: ") || !strings.HasSuffix(msg, tc.err.Error()) {
				t.Errorf("Error() = %q: want prefix %q and the original message", msg, "lease: get ns/lock: ")
			}
		})
	}
}

func TestErrorUnwrapReachesAPIStatus(t *testing.T) {
	srv, c := newFakeClient(t)
	srv.Fail("get", func(string) error { return apierrors.NewServiceUnavailable("etcd is down") })
	_, err := c.Get(t.Context())

	var status *apierrors.StatusError
	if !errors.As(err, &status) {
		t.Fatalf("errors.As(err, *StatusError) = false for %v", err)
	}
	if status.ErrStatus.Code != 503 || status.ErrStatus.Message != "etcd is down" {
		t.Errorf("StatusError = %+v", status.ErrStatus)
	}
	// apierrors' own predicates see through the wrapping.
	if !apierrors.IsServiceUnavailable(err) {
		t.Error("apierrors.IsServiceUnavailable(err) = false")
	}
	if apierrors.IsNotFound(err) {
		t.Error("apierrors.IsNotFound(err) = true")
	}

	// Wrapping the APIError again keeps every match.
	wrapped := fmt.Errorf("acquire: %w", err)
	if !errors.Is(wrapped, lease.ErrUnavailable) || !apierrors.IsServiceUnavailable(wrapped) {
		t.Errorf("wrapped error %v lost its classification", wrapped)
	}
	var apiErr *lease.APIError
	if !errors.As(wrapped, &apiErr) || apiErr.Verb != "get" {
		t.Errorf("errors.As through a second wrap: %v", apiErr)
	}
}

func TestErrorVerbs(t *testing.T) {
	for _, verb := range []string{"get", "create", "update", "watch"} {
		t.Run(verb, func(t *testing.T) {
			srv, c := newFakeClient(t)
			if verb != "create" {
				if _, err := c.Create(t.Context(), lease.Record{Holder: "a"}); err != nil {
					t.Fatal(err)
				}
			}
			srv.Fail(verb, func(name string) error {
				return apierrors.NewForbidden(leasesGR, name, fmt.Errorf(`User "system:serviceaccount:ns:sa" cannot %s resource "leases" in API group "coordination.k8s.io" in the namespace "ns"`, verb))
			})
			err := callVerb(t.Context(), t, c, verb)
			if !errors.Is(err, lease.ErrForbidden) || !lease.Permanent(err) {
				t.Fatalf("%s: err = %v, want ErrForbidden and permanent", verb, err)
			}
			var apiErr *lease.APIError
			if !errors.As(err, &apiErr) || apiErr.Verb != verb {
				t.Fatalf("APIError.Verb = %v, want %q", apiErr, verb)
			}
			msg := err.Error()
			for _, want := range []string{
				"lease: " + verb + " ns/lock: ",
				fmt.Sprintf("RBAC must allow verb %q", verb),
				`on resource "leases"`,
				"coordination.k8s.io",
				`in namespace "ns"`,
				"cannot " + verb, // the apiserver's own message is kept
			} {
				if !strings.Contains(msg, want) {
					t.Errorf("forbidden message %q lacks %q", msg, want)
				}
			}
		})
	}
}

// TestErrorFromRealRequests checks the classification of errors the fake
// apiserver produces by itself, as a real one would.
func TestErrorFromRealRequests(t *testing.T) {
	ctx := t.Context()
	srv, c := newFakeClient(t)

	if _, err := c.Get(ctx); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get of a missing lease: %v, want ErrNotFound", err)
	}
	first, err := c.Create(ctx, lease.Record{Holder: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, lease.Record{Holder: "b"}); !errors.Is(err, lease.ErrAlreadyExists) {
		t.Errorf("second Create: %v, want ErrAlreadyExists", err)
	}
	if _, err := c.Update(ctx, first, lease.Record{Holder: "b"}, 0); err != nil {
		t.Fatal(err)
	}
	// first is now stale.
	_, err = c.Update(ctx, first, lease.Record{Holder: "c"}, 0)
	if !errors.Is(err, lease.ErrConflict) || lease.Permanent(err) {
		t.Errorf("Update of a stale snapshot: %v, want ErrConflict, not permanent", err)
	}
	if _, err := c.Update(ctx, nil, lease.Record{}, 0); err == nil || errors.Is(err, lease.ErrConflict) {
		t.Errorf("Update without base: %v, want a plain error", err)
	}

	srv.Compact()
	if _, err := c.Watch(ctx, first.ResourceVersion); !errors.Is(err, lease.ErrGone) {
		t.Errorf("Watch from a compacted version: %v, want ErrGone", err)
	}

	srv.Delete("ns", "lock")
	if _, err := c.Update(ctx, first, lease.Record{Holder: "c"}, 0); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Update of a deleted lease: %v, want ErrNotFound", err)
	}
}

func TestAPIErrorDirect(t *testing.T) {
	inner := errors.New("inner")
	tests := []struct {
		name string
		err  *lease.APIError
		want string
	}{
		{"unclassified", &lease.APIError{Verb: "get", Namespace: "ns", Name: "x", Err: inner}, "lease: get ns/x: inner"},
		{"kind", &lease.APIError{Verb: "update", Namespace: "ns", Name: "x", Kind: lease.ErrConflict, Err: inner},
			"lease: update ns/x: conflict, the lease changed since it was read: inner"},
		{"unavailable", &lease.APIError{Verb: "watch", Namespace: "ns", Name: "x", Kind: lease.ErrUnavailable, Err: inner},
			"lease: watch ns/x: apiserver unavailable: inner"},
		{"forbidden", &lease.APIError{Verb: "create", Namespace: "kube-system", Name: "x", Kind: lease.ErrForbidden, Err: inner},
			`lease: create kube-system/x: forbidden: RBAC must allow verb "create" on resource "leases" (API group coordination.k8s.io) in namespace "kube-system": inner`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() =\n  %s\nwant\n  %s", got, tc.want)
			}
			for _, s := range sentinels {
				if got := errors.Is(tc.err, s); got != (s == tc.err.Kind) {
					t.Errorf("errors.Is(%s, %q) = %t", tc.name, s, got)
				}
			}
			if !errors.Is(tc.err, inner) {
				t.Error("errors.Is(err, inner) = false")
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("x"), false},
		{lease.ErrForbidden, true},
		{lease.ErrUnauthorized, true},
		{lease.ErrInvalid, true},
		{fmt.Errorf("wrapped: %w", lease.ErrInvalid), true},
		{errors.Join(errors.New("x"), lease.ErrForbidden), true},
		{lease.ErrNotFound, false},
		{lease.ErrAlreadyExists, false},
		{lease.ErrConflict, false},
		{lease.ErrUnavailable, false},
		{lease.ErrGone, false},
		{context.Canceled, false},
		{apierrors.NewForbidden(leasesGR, "x", errors.New("no")), false}, // only classified errors count
	}
	for _, tc := range tests {
		name := "nil"
		if tc.err != nil {
			name = tc.err.Error()
		}
		t.Run(name, func(t *testing.T) {
			if got := lease.Permanent(tc.err); got != tc.want {
				t.Errorf("Permanent(%v) = %t, want %t", tc.err, got, tc.want)
			}
		})
	}
}

func TestSentinelMessages(t *testing.T) {
	for _, s := range sentinels {
		if msg := s.Error(); !strings.HasPrefix(msg, "lease: ") || strings.ToLower(msg) != msg {
			t.Errorf("sentinel %q: want a lower-case message with the lease: prefix", msg)
		}
	}
}

func TestNewClientValidates(t *testing.T) {
	srv := fakelease.New()
	tests := []struct {
		name      string
		ns, lease string
		nilGetter bool
		want      []string
	}{
		{"nil getter", "ns", "x", true, []string{"leases getter is nil"}},
		{"no namespace", "", "x", false, []string{`namespace ""`, `name "x"`}},
		{"no name", "ns", "", false, []string{`namespace "ns"`, `name ""`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var (
				c   *lease.Client
				err error
			)
			if tc.nilGetter {
				c, err = lease.NewClient(nil, tc.ns, tc.lease)
			} else {
				c, err = lease.NewClient(srv, tc.ns, tc.lease)
			}
			if err == nil || c != nil {
				t.Fatalf("NewClient = %v, %v; want nil and an error", c, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	c, err := lease.NewClient(srv, "ns", "x")
	if err != nil || c.Namespace() != "ns" || c.Name() != "x" {
		t.Errorf("NewClient(ns, x) = %v (%v)", c, err)
	}
}
