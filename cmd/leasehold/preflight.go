package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/lease"
)

// requestTimeout bounds each request of the checks at start, so that an
// apiserver that accepts connections but never answers is reported within
// seconds.
const requestTimeout = 5 * time.Second

// apiStatus is what run and lock know about reaching the Kubernetes API:
// the last error, printed at once and again whenever it changes, so that
// retrying is never silent. Safe for concurrent use.
type apiStatus struct {
	out   io.Writer
	retry time.Duration // said in the message

	mu      sync.Mutex
	err     error
	printed string // the last error message printed; "" while healthy
}

// report records the latest outcome: an error, or nil when the API answers.
func (s *apiStatus) report(err error) {
	msg := ""
	if err != nil {
		msg = apiMessage(err).Error()
	}
	s.mu.Lock()
	s.err = err
	prev := s.printed
	s.printed = msg
	s.mu.Unlock()
	switch {
	case msg == prev:
	case msg == "":
		fmt.Fprintln(s.out, "leasehold: the Kubernetes API answers again")
	default:
		fmt.Fprintf(s.out, "leasehold: %s; retrying every %v\n", msg, s.retry)
	}
}

// Err returns the last error reported, nil while the API answers.
func (s *apiStatus) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// unreachableError is a request that got no answer in time; it matches
// lease.ErrUnavailable.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string        { return e.err.Error() }
func (e *unreachableError) Unwrap() error        { return e.err }
func (e *unreachableError) Is(target error) bool { return target == lease.ErrUnavailable }

// preflight checks at start what would otherwise fail only later, or
// never loudly: that the API answers, that the namespace exists, and that
// RBAC allows every verb on the Lease the command will need, the verbs of a
// follower's takeover included (SelfSubjectAccessReview needs no RBAC of
// its own).
type preflight struct {
	cs       kubernetes.Interface
	ns, name string // the Lease (for a semaphore, its first permit)
	status   *apiStatus
	// queue says the command queues for a lock: it creates and deletes
	// queue entries (<lock>-q-<version><random>), so it also needs delete.
	queue bool
}

// verbPurpose says why each verb on the Lease is needed.
var verbPurpose = []struct{ verb, purpose string }{
	{"get", "to read the Lease"},
	{"watch", "to follow it"},
	{"update", "to take and renew it"},
	{"create", "to create it, as it does not exist yet"},
	{"delete", "to remove its queue entries (<lock>-q-<version><random>) when a waiter is served or gives up"},
}

// run retries while the API cannot be reached, reporting each new error to
// the status, until the checks pass (nil), one fails for good (the error,
// for exit status 1), or ctx ends (the last error, matching
// lease.ErrUnavailable, or ctx's).
func (p *preflight) run(ctx context.Context, retry time.Duration) error {
	for {
		err := p.once(ctx)
		switch {
		case err == nil:
			p.status.report(nil)
			return nil
		case !errors.Is(err, lease.ErrUnavailable):
			return err
		case ctx.Err() != nil: // the request was cut short by ctx
			return err
		}
		p.status.report(err)
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// once makes the checks one time.
func (p *preflight) once(ctx context.Context) error {
	c, err := lease.NewClient(p.cs.CoordinationV1(), p.ns, p.name)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	_, err = c.Get(rctx)
	cancel()
	switch {
	case errors.Is(err, lease.ErrForbidden):
		// Name every verb missing, not only this one.
		if verr := p.checkVerbs(ctx, true); verr != nil {
			return verr
		}
		return err
	case err != nil && !errors.Is(err, lease.ErrNotFound):
		return err
	}
	exists := err == nil
	if err := p.checkVerbs(ctx, exists); err != nil {
		return err
	}
	if !exists {
		return p.checkNamespace(ctx)
	}
	return nil
}

// checkVerbs asks the apiserver which verbs RBAC allows on the Lease. A
// review the apiserver does not answer for another reason (an old or
// unusual apiserver) is skipped: the Lease requests themselves then report
// what is missing.
func (p *preflight) checkVerbs(ctx context.Context, exists bool) error {
	var missing []string
	for _, v := range verbPurpose {
		if (v.verb == "create" && exists) || (v.verb == "delete" && !p.queue) {
			continue
		}
		attrs := &authorizationv1.ResourceAttributes{Namespace: p.ns, Verb: v.verb, Group: coordinationv1.GroupName, Resource: "leases", Name: p.name}
		if v.verb == "create" || v.verb == "delete" {
			// RBAC cannot limit create to a name; queue entries have
			// random names, so delete is checked on any Lease.
			attrs.Name = ""
		}
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		r, err := p.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(rctx,
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: attrs}},
			metav1.CreateOptions{})
		cancel()
		switch {
		case isUnreachable(err):
			return &unreachableError{err}
		case err != nil:
			return nil
		case !r.Status.Allowed:
			missing = append(missing, fmt.Sprintf("verb %q (%s)", v.verb, v.purpose))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	them := "them"
	if len(missing) == 1 {
		them = "it"
	}
	return fmt.Errorf("forbidden: RBAC must allow %s on resource \"leases\" (API group coordination.k8s.io) in namespace %q: add %s to the Role bound to this user, as in %s",
		strings.Join(missing, " and "), p.ns, them, p.roleHint())
}

// roleHint names the example Role and the verbs it grants.
func (p *preflight) roleHint() string {
	if p.queue {
		return "deploy/base/role.yaml with delete added for locks (get, watch, create, update, delete)"
	}
	return "deploy/base/role.yaml (get, watch, create, update)"
}

// checkNamespace makes sure a Lease that does not exist yet can be created
// there: a server-side dry run fails with NotFound when the namespace does
// not exist, which would otherwise be retried forever.
func (p *preflight) checkNamespace(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err := p.cs.CoordinationV1().Leases(p.ns).Create(rctx,
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name}},
		metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("namespace %q not found: create it (kubectl create namespace %s), or pass -n with the namespace the Lease belongs in", p.ns, p.ns)
	case isUnreachable(err):
		return &unreachableError{err}
	}
	return nil
}

// isUnreachable reports whether a request got no answer: the apiserver
// could not be reached, or did not answer in time.
func isUnreachable(err error) bool {
	var ne net.Error
	return err != nil && (errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) ||
		apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsServiceUnavailable(err) ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "EOF"))
}
