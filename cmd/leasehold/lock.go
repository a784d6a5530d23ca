package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"

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
}

func newLockCmd(a *app) *cobra.Command {
	l := &lockCmd{app: a.logging()} // stderr lines timestamped (log.go)
	cmd := &cobra.Command{
		Use:   "lock NAME [flags] -- COMMAND [ARGS...]",
		Short: "Run a command while holding a lock (a Lease), like flock",
		Long: `lock takes the lock NAME (a Lease), runs COMMAND, and releases the lock when
COMMAND exits. It waits for the lock, woken by a watch rather than polling,
unless --wait=false; --timeout bounds the wait. With --permits N greater than 1
the lock is a semaphore of N permits on the Leases NAME-0 ... NAME-(N-1), and
at most N commands hold one at a time.

COMMAND runs in a process group of its own, with stdin, stdout and stderr
passed through and these variables added to its environment:
  LEASEHOLD_TOKEN     the fencing token of this acquisition (decimal; grows)
  LEASEHOLD_LEASE     namespace/name of the Lease held
  LEASEHOLD_IDENTITY  the holder identity written to the Lease
  LEASEHOLD_PERMIT    which permit is held (0 for a plain lock)

If the lock is lost (renewals failed for two thirds of --ttl, or the Lease was
taken), COMMAND's process group gets SIGTERM, then SIGKILL after --grace, and
lock exits with 76. On SIGTERM or SIGINT COMMAND is stopped the same way, the
lock released, and lock exits with COMMAND's status. If leasehold itself is
killed, COMMAND gets SIGKILL (Linux) and the lock expires after --ttl.

Exit status:
  COMMAND's status  COMMAND exited, or was stopped on SIGTERM/SIGINT (128+N if
                    killed by signal N)
  1                 API or RBAC error (the message names the missing verb)
  2                 usage: bad flags or durations, no "--" before COMMAND
  75                not acquired: held by another (--wait=false, the message
                    names the holder), --timeout passed, or interrupted
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
			return l.run(cmd.Context(), args[0], argv)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&l.wait, "wait", true, "wait for the lock; --wait=false exits with 75 at once if it is held")
	f.DurationVar(&l.timeout, "timeout", 0, "give up (exit 75) if the lock is not acquired within this time; 0 waits forever")
	f.DurationVar(&l.ttl, "ttl", lock.DefaultLeaseDuration, "lease duration: how long a crashed holder blocks others (whole seconds)")
	f.IntVar(&l.permits, "permits", 1, "number of holders allowed at once (more than 1: a semaphore)")
	f.StringVar(&l.identity, "identity", "", "holder identity (default: $POD_NAME or the hostname, plus a random suffix)")
	f.DurationVar(&l.grace, "grace", 10*time.Second, "time COMMAND has to exit after SIGTERM before it gets SIGKILL")
	return cmd
}

// acquirer is a Mutex or a Semaphore.
type acquirer struct {
	identity  string
	lock, try func(context.Context) (*lock.Held, error)
	names     []string
}

func (l *lockCmd) newAcquirer(leases coordinationv1client.LeasesGetter, ns, name string) (*acquirer, error) {
	cfg := lock.Config{
		Leases: leases, Namespace: ns, Name: name, Identity: l.identity,
		// The ratios of the defaults, 15s : 10s : 2s.
		LeaseDuration: l.ttl, RenewDeadline: l.ttl * 2 / 3, RetryPeriod: l.ttl * 2 / 15,
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
	if l.timeout < 0 || l.grace < 0 || l.permits < 1 {
		return withCode(ExitUsage, fmt.Errorf("lock: --timeout %v and --grace %v must not be negative, --permits %d must be at least 1", l.timeout, l.grace, l.permits))
	}
	if err := lookCommand(argv); err != nil {
		return err
	}
	ns, err := l.namespace()
	if err != nil {
		return withCode(ExitError, err)
	}
	cs, err := l.clientset()
	if err != nil {
		return withCode(ExitError, err)
	}
	acq, err := l.newAcquirer(cs.CoordinationV1(), ns, name)
	if err != nil {
		return withCode(ExitUsage, err)
	}

	actx, cancel := ctx, context.CancelFunc(func() {})
	if l.timeout > 0 {
		actx, cancel = context.WithTimeout(ctx, l.timeout)
	}
	take := acq.lock
	if !l.wait {
		take = acq.try
	}
	held, err := take(actx)
	cancel()
	if err != nil {
		return l.notAcquired(ctx, cs.CoordinationV1(), ns, name, acq, err)
	}
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := held.Release(rctx); err != nil {
			fmt.Fprintln(l.io.Err, "leasehold: release:", err)
		}
	}
	defer release()

	c, err := startChild(childSpec{argv: argv, io: l.io.child(), env: []string{
		"LEASEHOLD_TOKEN=" + held.Token().String(),
		"LEASEHOLD_LEASE=" + held.Lease(),
		"LEASEHOLD_IDENTITY=" + acq.identity,
		"LEASEHOLD_PERMIT=" + strconv.Itoa(held.Permit()),
	}})
	if err != nil {
		return err
	}
	select {
	case <-c.Done():
		return exitStatus(c.Code())
	case <-ctx.Done():
		fmt.Fprintf(l.io.Err, "leasehold: shutting down; stopping %s (grace %v)\n", argv[0], l.grace)
		return exitStatus(c.Stop(l.grace))
	case <-held.Done():
	}
	cause := context.Cause(held.Context())
	fmt.Fprintf(l.io.Err, "leasehold: lock %s lost (%v); stopping %s (grace %v)\n", held.Lease(), cause, argv[0], l.grace)
	code := c.Stop(l.grace)
	return withCode(ExitLost, fmt.Errorf("lock %s lost (%v); %s stopped with status %d", held.Lease(), cause, argv[0], code))
}

// notAcquired turns a failed acquisition into the exit status and a message
// that names the holder.
func (l *lockCmd) notAcquired(ctx context.Context, leases coordinationv1client.LeasesGetter, ns, name string, acq *acquirer, err error) error {
	var locked *lock.LockedError
	switch {
	case errors.As(err, &locked):
		return withCode(ExitNotAcquired, fmt.Errorf("lock %s/%s not acquired: %w", ns, name, err))
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return withCode(ExitNotAcquired, fmt.Errorf("lock %s/%s not acquired within --timeout %v%s", ns, name, l.timeout, lockHolders(ctx, leases, ns, acq.names)))
	case ctx.Err() != nil:
		return withCode(ExitNotAcquired, fmt.Errorf("lock %s/%s not acquired: interrupted while waiting", ns, name))
	}
	return withCode(ExitError, err)
}

// lockHolders reads who holds the leases, for a message; "" if unknown.
func lockHolders(ctx context.Context, leases coordinationv1client.LeasesGetter, ns string, names []string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var parts []string
	for _, n := range names {
		l, err := leases.Leases(ns).Get(ctx, n, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s/%s held by %q", ns, n, *l.Spec.HolderIdentity))
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, ", ")
}
