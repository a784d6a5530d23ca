package lock

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/internal/holder"
)

// Defaults for locks. A lock's LeaseDuration is how long a crashed holder
// blocks others.
const (
	DefaultLeaseDuration = holder.DefaultLeaseDuration
	DefaultRenewDeadline = holder.DefaultRenewDeadline
	DefaultRetryPeriod   = holder.DefaultRetryPeriod
	// MaxLeaseDuration is the longest LeaseDuration accepted.
	MaxLeaseDuration = holder.MaxLeaseDuration
)

// Config configures a Mutex or Semaphore. New* never modify it.
type Config struct {
	// Leases is the API to use, usually clientset.CoordinationV1(). Required.
	Leases coordinationv1client.LeasesGetter
	// Namespace and Name of the lock's Lease (a Semaphore uses Name-0 ...
	// Name-(N-1)). Required.
	Namespace, Name string
	// Identity written as the holder. Default: the hostname (or POD_NAME)
	// plus a random suffix, unique per Mutex/Semaphore value.
	Identity string
	// LeaseDuration: how long a holder that stops renewing (crashed) blocks
	// others. Whole seconds, at most MaxLeaseDuration. Default 15s.
	LeaseDuration time.Duration
	// RenewDeadline: a holder whose renewals fail this long, counted from
	// when the last successful one was sent, loses the lock (Held.Context
	// ends). Default: 2/3 of LeaseDuration (10s).
	RenewDeadline time.Duration
	// RetryPeriod: interval between renewals and between retries. Default:
	// RenewDeadline/5 (2s).
	RetryPeriod time.Duration
	// ClaimAfter is ignored: waiters are served in the order they queued
	// (see the package doc), so no waiter needs to claim a turn.
	//
	// Deprecated: the queue makes it unnecessary.
	ClaimAfter time.Duration
	// Clock is the time source. Default: the real clock.
	Clock clock.Clock
	// Logger receives retries and losses. Default: discard.
	Logger logr.Logger
	// Hooks receive per-attempt callbacks (for metrics).
	Hooks Hooks
}

// Hooks are optional callbacks for metrics. They run on the goroutines that
// acquire and renew, never on the one that ends a Held at its deadline, and
// should return quickly: a hook that blocks delays renewals (and may lose
// the lock), never the end of Held.Context.
type Hooks struct {
	// Renewed is called after every renewal attempt with its latency.
	Renewed func(latency time.Duration, err error)
	// AttemptFailed is called when an acquisition attempt fails for a reason
	// other than losing a race.
	AttemptFailed func(err error)
	// Conflict is called when an acquisition attempt loses a race (HTTP
	// 409).
	Conflict func()
	// Queued is called while waiting whenever the number of live waiters
	// queued ahead of this one changes (0: next in line). Setting it makes
	// a waiter read the whole queue when it joins, to learn that number
	// (one request whose size grows with the queue; without it, joining
	// reads nothing of the queue). Far back in the queue it reports the
	// number then, and whenever a read places it again (when one of the
	// few entries it watches goes); near the head, at every change.
	Queued func(ahead int)
	// Requeued is called when the waiter's queue entry was deleted or
	// edited by another client, or skipped because it expired in the
	// releasing holder's view: the waiter queues again at the back. The
	// error matches ErrQueueEntryLost and names the entry.
	Requeued func(err error)
}

// Validate reports every problem with the Config for a Mutex at once, each
// naming the field and its value.
func (c Config) Validate() error {
	_, err := c.complete(1)
	return err
}

// settings is a completed Config: the shared core plus the lock's own.
type settings struct {
	holder.Config
	hooks    holder.Hooks
	queued   func(ahead int)
	requeued func(err error)
}

func (c Config) complete(permits int) (settings, error) {
	core, err := holder.Config{
		Leases: c.Leases, Namespace: c.Namespace, Name: c.Name, Identity: c.Identity,
		Timing: holder.Timing{LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod},
		Clock:  c.Clock, Logger: c.Logger,
	}.Complete(defaultIdentity)
	errs := []error{err}
	if permits < 1 {
		errs = append(errs, fmt.Errorf("permits %d must be at least 1", permits))
	} else if permits > 1 && len(holder.ValidateRef(c.Namespace, c.Name)) == 0 {
		if longest := permitName(c.Name, permits-1); len(holder.ValidateRef(c.Namespace, longest)) > 0 {
			errs = append(errs, fmt.Errorf("Name %q does not give valid Lease names for %d permits: %q is not a valid Lease name", c.Name, permits, longest))
		}
	}
	if max := 253 - entrySuffixLen; len(c.Name) > max {
		errs = append(errs, fmt.Errorf("Name %q is %d characters long, more than %d: the lock's queue entries are named <Name>-q-<24 hex digits>, at most 253 characters", c.Name, len(c.Name), max))
	}
	s := settings{Config: core, queued: c.Hooks.Queued, requeued: c.Hooks.Requeued,
		hooks: holder.Hooks{Renewed: c.Hooks.Renewed, AttemptFailed: c.Hooks.AttemptFailed, Conflict: c.Hooks.Conflict}}
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("lock: invalid config: %w", err)
	}
	return s, nil
}

func permitName(name string, i int) string { return fmt.Sprintf("%s-%d", name, i) }

// defaultIdentity is the elector's default identity plus a random suffix,
// so that several Mutex values in one process are distinct holders.
func defaultIdentity() (string, error) {
	host, err := holder.DefaultIdentity()
	if err != nil {
		return "", err
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return host + "-" + hex.EncodeToString(b[:]), nil
}
