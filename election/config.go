package election

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/lease"
)

// Defaults, the same as client-go's recommended values so that mixed fleets
// agree.
const (
	DefaultLeaseDuration = lease.DefaultLeaseDuration
	DefaultRenewDeadline = lease.DefaultRenewDeadline
	DefaultRetryPeriod   = lease.DefaultRetryPeriod
)

// Config configures an Elector. The zero value of every optional field means
// its documented default; New never modifies the caller's Config.
type Config struct {
	// Leases is the API to use, usually clientset.CoordinationV1(). Required.
	Leases coordinationv1client.LeasesGetter
	// Namespace and Name of the Lease. Required; the Lease is created if it
	// does not exist.
	Namespace, Name string
	// Identity of this candidate, unique among candidates. Default: the
	// POD_NAME environment variable, else the hostname.
	Identity string

	// LeaseDuration is how long followers wait, after they last saw the lease
	// change, before they take it over: the crash-failover time. Whole
	// seconds. Default 15s. Must exceed RenewDeadline by the margin that
	// covers clock-rate differences: the fastest clock must run less than
	// LeaseDuration/RenewDeadline times as fast as the slowest (every clock
	// within ±20% of real time with the defaults).
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps leading without a successful
	// renewal, counted from when the last successful renewal was sent; the
	// leadership context ends then. Default 10s.
	RenewDeadline time.Duration
	// RetryPeriod is the interval between the leader's renewals (each one API
	// write) and between retries after transient errors. Followers do not
	// poll. Default 2s.
	RetryPeriod time.Duration
	// ReleaseOnCancel releases the lease when Run's context ends, after the
	// work has returned, so a follower takes over at once. Default true; set
	// to a pointer to false to leave the lease to expire instead.
	ReleaseOnCancel *bool

	// Clock is the time source. Default: the real clock.
	Clock clock.Clock
	// Logger receives state changes (V(0)) and retries (V(2)). Default:
	// discard.
	Logger logr.Logger
	// Registerer, if set, receives the elector's Prometheus metrics, labelled
	// with the lease as lease="namespace/name".
	Registerer prometheus.Registerer
	// Recorder, if set, records "LeaderElection" Events on the Lease when this
	// candidate starts and stops leading.
	Recorder record.EventRecorder
}

// Validate reports every problem with the Config at once.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns a copy with defaults applied, or every problem found.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	if c.Leases == nil {
		errs = append(errs, errors.New("Leases is required (for example clientset.CoordinationV1())"))
	}
	errs = append(errs, lease.ValidateRef(c.Namespace, c.Name)...)
	if c.Identity == "" {
		id, err := DefaultIdentity()
		if err != nil {
			errs = append(errs, fmt.Errorf("Identity is empty and no default could be found: %w", err))
		}
		c.Identity = id
	}
	t := c.timing().WithDefaults()
	c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = t.LeaseDuration, t.RenewDeadline, t.RetryPeriod
	if err := c.timing().Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.ReleaseOnCancel == nil {
		t := true
		c.ReleaseOnCancel = &t
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("election: invalid config: %w", err)
	}
	return c, nil
}

func (c Config) timing() lease.Timing {
	return lease.Timing{LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod}
}

// DefaultIdentity returns the POD_NAME environment variable if set, else the
// hostname.
func DefaultIdentity() (string, error) { return lease.DefaultIdentity() }
