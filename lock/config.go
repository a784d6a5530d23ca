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

	"github.com/leasehold/leasehold/lease"
)

// Defaults for locks. A lock's LeaseDuration is how long a crashed holder
// blocks others.
const (
	DefaultLeaseDuration = lease.DefaultLeaseDuration
	DefaultRenewDeadline = lease.DefaultRenewDeadline
	DefaultRetryPeriod   = lease.DefaultRetryPeriod
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
	// others. Whole seconds. Default 15s.
	LeaseDuration time.Duration
	// RenewDeadline: a holder whose renewals fail this long, counted from
	// when the last successful one was sent, loses the lock (Held.Context
	// ends). Default 10s.
	RenewDeadline time.Duration
	// RetryPeriod: interval between renewals and between retries. Default 2s.
	RetryPeriod time.Duration
	// ClaimAfter: a waiter that has waited this long claims the next turn by
	// setting spec.preferredHolder, so that it is not starved by luckier
	// waiters: at the next release the others hold back for one lease
	// duration. The claim is written right after the waiter sees the holder
	// renew or take the lease, never on the lease of a holder that has
	// stopped writing: a claim changes the record, which restarts every
	// observer's expiry wait. Default: LeaseDuration. Negative disables
	// claims.
	ClaimAfter time.Duration
	// Clock is the time source. Default: the real clock.
	Clock clock.Clock
	// Logger receives retries and losses. Default: discard.
	Logger logr.Logger
	// Hooks receive per-attempt callbacks (for metrics).
	Hooks lease.Hooks
}

func (c Config) withDefaults(permits int) (Config, error) {
	var errs []error
	if c.Leases == nil {
		errs = append(errs, errors.New("Leases is required (for example clientset.CoordinationV1())"))
	}
	refErrs := lease.ValidateRef(c.Namespace, c.Name)
	errs = append(errs, refErrs...)
	if len(refErrs) == 0 && permits > 1 {
		if longest := permitName(c.Name, permits-1); len(lease.ValidateRef(c.Namespace, longest)) > 0 {
			errs = append(errs, fmt.Errorf("Name %q does not give valid Lease names for %d permits: %q is longer than 253 characters", c.Name, permits, longest))
		}
	}
	if permits < 1 {
		errs = append(errs, fmt.Errorf("permits %d must be at least 1", permits))
	}
	if c.Identity == "" {
		id, err := defaultIdentity()
		if err != nil {
			errs = append(errs, fmt.Errorf("Identity is empty and no default could be made: %w", err))
		}
		c.Identity = id
	}
	t := c.timing().WithDefaults()
	c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = t.LeaseDuration, t.RenewDeadline, t.RetryPeriod
	if c.ClaimAfter == 0 {
		c.ClaimAfter = c.LeaseDuration
	}
	if err := c.timing().Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("lock: invalid config: %w", err)
	}
	return c, nil
}

func (c Config) timing() lease.Timing {
	return lease.Timing{LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod}
}

func permitName(name string, i int) string { return fmt.Sprintf("%s-%d", name, i) }

// defaultIdentity is lease.DefaultIdentity plus a random suffix, so that
// several Mutex values in one process are distinct holders.
func defaultIdentity() (string, error) {
	host, err := lease.DefaultIdentity()
	if err != nil {
		return "", err
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return host + "-" + hex.EncodeToString(b[:]), nil
}
