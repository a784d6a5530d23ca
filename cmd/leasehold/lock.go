package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lock"
)

// lockCmd is `leasehold lock`: run a command while holding a lock.
type lockCmd struct {
	*app
	wait     bool
	timeout  time.Duration
	ttl      time.Duration
	permits  int
	identity string
	grace    time.Duration

	timing holder.Timing // completed by validate
}

// tryTimeout bounds lock --wait=false: the checks and the one attempt
// either get an answer from the API within it, or lock exits with 69.
const tryTimeout = 5 * time.Second

func newLockCmd(a *app) *cobra.Command {
	l := &lockCmd{app: a.logging()} // stderr lines timestamped (log.go)
	cmd := &cobra.Command{
		Use:   "lock NAME [flags] -- COMMAND [ARGS...]",
		Short: "Run a command while holding a lock (a Lease), like flock",
		Long: `lock takes the lock NAME (a Lease), runs COMMAND, and releases the lock when
COMMAND exits. It waits for the lock, woken by a watch rather than polling,
unless --wait=false; --timeout bounds the wait. With --permits N greater than 1
the lock is a semaphore of N permits on the Leases NAME-0 ... NAME-(N-1), and
at most N commands hold one at a time. N is at most 64: each permit is a Lease
of its own. Waiters queue (a Lease NAME-q-<version><random> each, renewed while they
wait) and are served in order: a releasing holder hands the lock to the
first. While waiting, lock prints how many waiters are ahead.

COMMAND runs in a process group of its own, with stdin, stdout and stderr
passed through and these variables added to its environment:
  LEASEHOLD_TOKEN     the fencing token of this acquisition (decimal; grows)
  LEASEHOLD_LEASE     namespace/name of the Lease held
  LEASEHOLD_IDENTITY  the holder identity written to the Lease
  LEASEHOLD_PERMIT    which permit is held (0 for a plain lock)

If the lock is lost (renewals failed for two thirds of --ttl, or the Lease was
taken), COMMAND's process group gets SIGTERM, then SIGKILL after --grace, and
lock exits with 76. On SIGTERM, SIGINT or SIGHUP COMMAND is stopped the same
way, the lock released, and lock exits with COMMAND's status. If leasehold
itself is killed, COMMAND gets SIGKILL (Linux) and the lock expires after
--ttl. Renewals every 2/15 of --ttl keep the lock (2s for 15s).

Before it waits, lock checks that the Kubernetes API answers, that the
namespace exists and that RBAC allows the verbs it needs on the Lease (get,
watch, update, and create while the Lease does not exist; its queue entries
also need create and delete). While the API
cannot be reached it retries, printing the first error at once and then each
different one, until --timeout passes (5s with --wait=false).

` + signalHelp + `

Exit status:
  COMMAND's status  COMMAND exited, or was stopped on SIGTERM, SIGINT or SIGHUP
                    (128+N if killed by signal N)
  1                 API or RBAC error, or the namespace does not exist (the
                    message names the missing verb or the namespace)
  2                 usage: bad flags or durations, no "--" before COMMAND
  69                the Kubernetes API could not be reached (within --timeout,
                    or 5s with --wait=false)
  75                not acquired: another holder has it (--wait=false, or
                    --timeout passed; the message names the holder), or
                    interrupted while waiting
  76                the lock was lost; COMMAND was stopped
  126, 127          COMMAND cannot be executed, or was not found`,
		Example: `  # One database migration at a time, across all pods and CI jobs.
  leasehold lock db-migrate -- ./migrate up

  # Skip this run if another is in progress (exit 75), like flock -n.
  leasehold lock nightly-report --wait=false -- ./report.sh

  # At most three concurrent builds; give up after ten minutes.
  leasehold lock builds --permits 3 --timeout 10m -- make release`,
		RunE: func(cmd *cobra.Command, args []string) error {
			argv, err := commandAfterDash(cmd, args, 1)
			if err != nil {
				return err
			}
			if err := l.validate(cmd.Flags(), args[0]); err != nil {
				return err
			}
			return l.run(cmd.Context(), args[0], argv)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&l.wait, "wait", true, "wait for the lock; --wait=false exits with 75 at once if it is held")
	f.DurationVar(&l.timeout, "timeout", 0, "give up (exit 75) if the lock is not acquired within this time; 0 waits forever")
	f.DurationVar(&l.ttl, "ttl", lock.DefaultLeaseDuration, "lease duration: how long a crashed holder blocks others (whole seconds, 1s to 24h)")
	f.IntVar(&l.permits, "permits", 1, "number of holders allowed at once (more than 1: a semaphore; at most 64)")
	f.StringVar(&l.identity, "identity", "", "holder identity (default: $POD_NAME or the hostname, plus a random suffix)")
	f.DurationVar(&l.grace, "grace", 10*time.Second, "time COMMAND has to exit after SIGTERM before it gets SIGKILL")
	return cmd
}

// validate checks the flags and NAME, every problem at once, and completes
// the timing.
func (l *lockCmd) validate(fs *pflag.FlagSet, name string) error {
	errs := []error{checkLeaseName("NAME", name), checkPermits(l.permits)}
	t, terrs := completeTiming(fs, timingFlags{lease: "ttl"}, l.ttl, 0, 0)
	l.timing = t
	errs = append(errs, terrs...)
	errs = append(errs, nonNegative("timeout", l.timeout), nonNegative("grace", l.grace))
	if err := errors.Join(errs...); err != nil {
		return withCode(ExitUsage, fmt.Errorf("lock: %w", err))
	}
	return nil
}

// acquirer is a Mutex or a Semaphore.
type acquirer struct {
	identity  string
	lock, try func(context.Context) (*lock.Held, error)
	names     []string
}

func (l *lockCmd) newAcquirer(leases coordinationv1client.LeasesGetter, ns, name string, status *apiStatus) (*acquirer, error) {
	cfg := lock.Config{
		Leases: leases, Namespace: ns, Name: name, Identity: l.identity,
		LeaseDuration: l.timing.LeaseDuration, RenewDeadline: l.timing.RenewDeadline, RetryPeriod: l.timing.RetryPeriod,
		Hooks: lock.Hooks{
			AttemptFailed: status.report,
			// The place in the queue while waiting, and an entry lost.
			Queued: func(ahead int) {
				fmt.Fprintf(l.io.Err, "leasehold: waiting for lock %s/%s: %d waiter(s) ahead in the queue\n", ns, name, ahead)
			},
			Requeued: func(err error) { fmt.Fprintf(l.io.Err, "leasehold: %v\n", err) },
		},
		Logger: l.logger(),
	}
	if l.permits <= 1 {
		m, err := lock.NewMutex(cfg)
		if err != nil {
			return nil, err
		}
		return &acquirer{identity: m.Identity(), lock: m.Lock, try: m.TryLock, names: []string{name}}, nil
	}
	s, err := lock.NewSemaphore(cfg, l.permits)
	if err != nil {
		return nil, err
	}
	a := &acquirer{identity: s.Identity(), lock: s.Acquire, try: s.TryAcquire}
	for i := range l.permits {
		a.names = append(a.names, name+"-"+strconv.Itoa(i))
	}
	return a, nil
}

func (l *lockCmd) run(ctx context.Context, name string, argv []string) error {
	if err := lookCommand(argv); err != nil {
		return err
	}
	// From here on, job-control and user signals are ours to relay.
	sup := startSupervisor(l.io.Notify, l.io.Err)
	defer sup.close()
	ns, err := l.namespace()
	if err != nil {
		return asFailure(err)
	}
	cs, err := l.client()
	if err != nil {
		return asFailure(err)
	}
	status := &apiStatus{out: l.io.Err, retry: l.timing.RetryPeriod}
	acq, err := l.newAcquirer(cs.CoordinationV1(), ns, name, status)
	if err != nil {
		return withCode(ExitUsage, err)
	}
	held, err := l.acquire(ctx, cs, ns, name, acq, status)
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := held.Release(rctx); err != nil {
			fmt.Fprintf(l.io.Err, "leasehold: release of lock %s failed (it expires after --ttl %s): %v\n", held.Lease(), shortDuration(l.timing.LeaseDuration), apiMessage(err))
		}
	}()
	return l.runHolding(ctx, sup, held, acq, cs.CoordinationV1(), ns, argv)
}

// client returns a clientset whose client-side rate limit lets a waiter
// read and watch every permit at once (client-go's default, 5 requests a
// second with bursts of 10, would take seconds for --permits 64).
func (l *lockCmd) client() (*kubernetes.Clientset, error) {
	cfg, err := l.restConfig()
	if err != nil {
		return nil, err
	}
	if cfg.RateLimiter == nil {
		cfg.QPS = max(cfg.QPS, 5, float32(2*l.permits))
		cfg.Burst = max(cfg.Burst, 10, 10+4*l.permits)
	}
	return kubernetes.NewForConfig(cfg)
}

// acquire checks that the lock can be had at all and takes it, within
// --timeout (or the bound of --wait=false), which both share.
func (l *lockCmd) acquire(ctx context.Context, cs kubernetes.Interface, ns, name string, acq *acquirer, status *apiStatus) (*lock.Held, error) {
	actx, cancel := ctx, context.CancelFunc(func() {})
	switch {
	case !l.wait:
		actx, cancel = context.WithTimeout(ctx, tryTimeout)
	case l.timeout > 0:
		actx, cancel = context.WithTimeout(ctx, l.timeout)
	}
	defer cancel()
	check := &preflight{cs: cs, ns: ns, name: acq.names[0], status: status, queue: l.wait}
	if err := check.run(actx, l.timing.RetryPeriod); err != nil {
		return nil, l.notReady(ctx, ns, name, err)
	}
	take := acq.lock
	if !l.wait {
		take = acq.try
	}
	held, err := take(actx)
	if err != nil {
		return nil, l.notAcquired(ctx, cs.CoordinationV1(), ns, name, acq, status, err)
	}
	status.report(nil)
	return held, nil
}

// runHolding runs COMMAND under the held lock until it exits, leasehold is
// shut down, or the lock is lost.
func (l *lockCmd) runHolding(ctx context.Context, sup *supervisor, held *lock.Held, acq *acquirer, leases coordinationv1client.LeasesGetter, ns string, argv []string) error {
	c, err := sup.start(childSpec{argv: argv, io: l.io.child(), env: []string{
		"LEASEHOLD_TOKEN=" + held.Token().String(),
		"LEASEHOLD_LEASE=" + held.Lease(),
		"LEASEHOLD_IDENTITY=" + acq.identity,
		"LEASEHOLD_PERMIT=" + strconv.Itoa(held.Permit()),
	}}, argv[0], func() bool { return held.Err() == nil && time.Now().Before(held.Deadline()) })
	if err != nil {
		return err
	}
	// (start's holds: COMMAND may run only while the lock is held and its renew deadline
	// has not passed (a stopped process sees the deadline pass before its
	// timer fires).)
	defer sup.detach(c)
	select {
	case <-c.Done():
		if !sup.killedOnResume(c) {
			return exitStatus(c.Code())
		}
		<-held.Done() // killed because the lock was lost: its context follows
	case <-ctx.Done():
		fmt.Fprintf(l.io.Err, "leasehold: shutting down; stopping %s (grace %v)\n", argv[0], l.grace)
		return exitStatus(c.Stop(l.grace))
	case <-held.Done():
	}
	now := currentHolder(ctx, leases, ns, acq.names[held.Permit()], acq.identity)
	reason := endReason(context.Cause(held.Context()), now, acq.identity)
	fmt.Fprintf(l.io.Err, "leasehold: lock %s lost (%s); stopping %s (grace %v)\n", held.Lease(), reason, argv[0], l.grace)
	code := c.Stop(l.grace)
	return withCode(ExitLost, fmt.Errorf("lock %s lost (%s); %s stopped with status %d", held.Lease(), reason, argv[0], code))
}

// notReady turns a failed check at start into the exit status: 69 when the
// API could not be reached in time, 75 when interrupted, else 1.
func (l *lockCmd) notReady(ctx context.Context, ns, name string, err error) error {
	switch {
	case ctx.Err() != nil:
		return withCode(ExitNotAcquired, fmt.Errorf("lock %s/%s not acquired: interrupted while waiting", ns, name))
	case errors.Is(err, lease.ErrUnavailable):
		return withCode(ExitUnavailable, fmt.Errorf("lock %s/%s not acquired: %w; gave up after %s", ns, name, apiMessage(err), l.budget()))
	}
	return withCode(ExitError, apiMessage(err))
}

// budget says what bounded the wait, for messages.
func (l *lockCmd) budget() string {
	if !l.wait {
		return fmt.Sprintf("%v (--wait=false)", tryTimeout)
	}
	return fmt.Sprintf("--timeout %v", l.timeout)
}

// notAcquired turns a failed acquisition into the exit status and a message
// that names the holder: 75 only when another holder has the lock (or the
// wait was interrupted), 69 when the API could not be reached.
func (l *lockCmd) notAcquired(ctx context.Context, leases coordinationv1client.LeasesGetter, ns, name string, acq *acquirer, status *apiStatus, err error) error {
	var locked *lock.LockedError
	switch {
	case errors.As(err, &locked):
		return withCode(ExitNotAcquired, fmt.Errorf("lock %s/%s not acquired: %w", ns, name, err))
	case ctx.Err() != nil:
		return withCode(ExitNotAcquired, fmt.Errorf("lock %s/%s not acquired: interrupted while waiting", ns, name))
	case errors.Is(err, context.DeadlineExceeded) && !l.wait:
		// The one attempt of --wait=false got no answer in time.
		err = &unreachableError{err}
	case errors.Is(err, context.DeadlineExceeded):
		holders, herr := lockHolders(ctx, leases, ns, acq.names)
		if herr == nil && holders == "" {
			herr = status.Err() // nobody holds it: what kept us from it
		}
		switch {
		case holders != "":
			return withCode(ExitNotAcquired, fmt.Errorf("lock %s/%s not acquired within %s: %s", ns, name, l.budget(), holders))
		case herr != nil:
			err = herr
		default:
			return withCode(ExitNotAcquired, fmt.Errorf("lock %s/%s not acquired within %s", ns, name, l.budget()))
		}
	}
	if errors.Is(err, lease.ErrUnavailable) {
		return withCode(ExitUnavailable, fmt.Errorf("lock %s/%s not acquired: %w", ns, name, apiMessage(err)))
	}
	return withCode(ExitError, apiMessage(err))
}

// lockHolders reads who holds the leases, for a message; "" if nobody.
func lockHolders(ctx context.Context, leases coordinationv1client.LeasesGetter, ns string, names []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var parts []string
	for _, n := range names {
		l, err := leases.Leases(ns).Get(ctx, n, metav1.GetOptions{})
		switch {
		case isUnreachable(err):
			return "", &unreachableError{err}
		case err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "":
			continue
		}
		parts = append(parts, fmt.Sprintf("%s/%s held by %q", ns, n, *l.Spec.HolderIdentity))
	}
	return strings.Join(parts, ", "), nil
}

// currentHolder reads who holds a Lease now, for a message: "" if nobody,
// unknown if it cannot be read.
func currentHolder(ctx context.Context, leases coordinationv1client.LeasesGetter, ns, name, unknown string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
	defer cancel()
	l, err := leases.Leases(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err != nil:
		return unknown
	case l.Spec.HolderIdentity == nil:
		return ""
	}
	return *l.Spec.HolderIdentity
}
