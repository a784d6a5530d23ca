package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/leasehold/leasehold/lease"
)

// apiMessage says what went wrong with a request on a Lease once, naming
// the Lease and the fix, instead of the layers of prefixes the library and
// client-go add ("lease: update ns/x: forbidden: ... leases.coordination.k8s.io
// "x" is forbidden: User ... cannot update resource "leases" ..."). The
// result still matches (errors.Is, errors.As) what err matched. Errors that
// are not about a Lease are returned as they are.
func apiMessage(err error) error {
	var ue *unreachableError
	if errors.As(err, &ue) {
		return &explained{msg: unreachable(ue.err), err: err}
	}
	var ae *lease.APIError
	if err == nil || !errors.As(err, &ae) {
		return err
	}
	ref := ae.Namespace + "/" + ae.Name
	var msg string
	switch {
	case errors.Is(ae, lease.ErrForbidden):
		msg = fmt.Sprintf("forbidden: %s may not %s lease %s: RBAC must allow verb %q on resource \"leases\" (API group coordination.k8s.io) in namespace %q",
			requester(ae.Err), ae.Verb, ref, ae.Verb, ae.Namespace)
	case errors.Is(ae, lease.ErrUnauthorized):
		msg = fmt.Sprintf("%s lease %s: unauthorized: the apiserver rejected the credentials; check the token or client certificate of the kubeconfig context", ae.Verb, ref)
	case errors.Is(ae, lease.ErrUnavailable):
		msg = unreachable(ae.Err)
	case errors.Is(ae, lease.ErrConflict):
		msg = fmt.Sprintf("%s lease %s: it changed while being written (conflict); run the command again", ae.Verb, ref)
	case errors.Is(ae, lease.ErrNotFound) && ae.Verb == "create":
		msg = fmt.Sprintf("namespace %q not found: create it, or pass -n with an existing namespace", ae.Namespace)
	case errors.Is(ae, lease.ErrNotFound):
		msg = fmt.Sprintf("lease %q not found in namespace %q", ae.Name, ae.Namespace)
	default:
		msg = fmt.Sprintf("%s lease %s: %s", ae.Verb, ref, statusMessage(ae.Err))
	}
	return &explained{msg: msg, err: err}
}

var userRE = regexp.MustCompile(`User "([^"]*)"`)

// requester names the user a Forbidden error was for, as the apiserver
// wrote it.
func requester(err error) string {
	if m := userRE.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Sprintf("user %q", m[1])
	}
	return "this user"
}

// unreachable describes a request that did not get an answer, without the
// request's URL.
func unreachable(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		host := ue.URL
		if u, perr := url.Parse(ue.URL); perr == nil {
			host = u.Host
		}
		why := ue.Err.Error()
		if errors.Is(ue.Err, context.DeadlineExceeded) {
			why = "no answer in time"
		}
		return fmt.Sprintf("cannot reach the Kubernetes API at %s: %s", host, why)
	}
	return fmt.Sprintf("the Kubernetes API did not answer: %s", statusMessage(err))
}

// statusMessage is the apiserver's own message of a status error.
func statusMessage(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) && se.Status().Message != "" {
		return se.Status().Message
	}
	return err.Error()
}
