package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/leasehold/leasehold/lease"
)

func TestAPIMessage(t *testing.T) {
	leases := schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}
	apiErr := func(verb string, kind, err error) error {
		return fmt.Errorf("election: campaign for lease default/x: %w", &lease.APIError{Verb: verb, Namespace: "default", Name: "x", Kind: kind, Err: err})
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"forbidden", apiErr("update", lease.ErrForbidden, apierrors.NewForbidden(leases, "x",
			errors.New(`User "system:serviceaccount:ns:app" cannot update resource "leases" in API group "coordination.k8s.io" in the namespace "default"`))),
			`forbidden: user "system:serviceaccount:ns:app" may not update lease default/x: RBAC must allow verb "update" on resource "leases" (API group coordination.k8s.io) in namespace "default"`},
		{"unreachable", apiErr("get", lease.ErrUnavailable, &url.Error{Op: "Get", URL: "https://10.0.0.1:6443/apis/coordination.k8s.io/v1/namespaces/default/leases/x", Err: errors.New("dial tcp 10.0.0.1:6443: connect: connection refused")}),
			"cannot reach the Kubernetes API at 10.0.0.1:6443: dial tcp 10.0.0.1:6443: connect: connection refused"},
		{"no answer", apiErr("get", lease.ErrUnavailable, &url.Error{Op: "Get", URL: "https://10.0.0.1:6443/x", Err: context.DeadlineExceeded}),
			"cannot reach the Kubernetes API at 10.0.0.1:6443: no answer in time"},
		{"namespace missing", apiErr("create", lease.ErrNotFound, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "default")),
			`namespace "default" not found: create it, or pass -n with an existing namespace`},
		{"invalid", apiErr("update", lease.ErrInvalid, apierrors.NewBadRequest("spec.leaseDurationSeconds: must be positive")),
			"update lease default/x: spec.leaseDurationSeconds: must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := apiMessage(tc.err)
			if got.Error() != tc.want {
				t.Errorf("message\n%s\nwant\n%s", got, tc.want)
			}
			if strings.Count(got.Error(), "lease:") > 0 {
				t.Errorf("message %q keeps a package prefix", got)
			}
			var ae *lease.APIError
			if !errors.As(got, &ae) {
				t.Errorf("message %q no longer matches the API error", got)
			}
		})
	}
	if err := errors.New("other"); apiMessage(err) != err {
		t.Error("an error not about a Lease was changed")
	}
}
