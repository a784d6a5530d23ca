package holder

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/validation"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/clock"
)

// Default timing, client-go's recommended values, so that mixed fleets agree.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
	// MaxLeaseDuration bounds LeaseDuration: it is how long a crashed
	// holder blocks everyone, and a day is already far beyond any
	// failover anyone waits for. (The wire field is int32 seconds.)
	MaxLeaseDuration = 24 * time.Hour
)

// Timing is the timing of a holder, with the meaning client-go gives the same
// names.
type Timing struct {
	// LeaseDuration is written to the Lease: how long others wait after
	// seeing the last change before they may take it. Whole seconds.
	LeaseDuration time.Duration
	// RenewDeadline is how long a holder keeps its term without a successful
	// renewal, counted from when that renewal was sent. Must be less than
	// LeaseDuration; the margin is what absorbs clock-rate differences.
	RenewDeadline time.Duration
	// RetryPeriod is the interval between renewals, and between attempts
	// after a transient API error.
	RetryPeriod time.Duration
}

// WithDefaults fills zero fields. LeaseDuration defaults to 15s; the others
// scale from it as client-go's defaults do (10s and 2s for 15s):
// RenewDeadline = 2/3 LeaseDuration, RetryPeriod = RenewDeadline/5. So
// setting only LeaseDuration always gives a valid timing.
func (t Timing) WithDefaults() Timing {
	if t.LeaseDuration == 0 {
		t.LeaseDuration = DefaultLeaseDuration
	}
	if t.RenewDeadline == 0 {
		t.RenewDeadline = t.LeaseDuration * 2 / 3
	}
	if t.RetryPeriod == 0 {
		t.RetryPeriod = t.RenewDeadline / 5
	}
	return t
}

// Validate checks the timing and names every bad field and its value.
func (t Timing) Validate() error {
	var errs []error
	switch {
	case t.LeaseDuration < time.Second || t.LeaseDuration%time.Second != 0:
		errs = append(errs, fmt.Errorf("LeaseDuration %v must be a whole number of seconds, at least 1s (the Lease stores seconds)", t.LeaseDuration))
	case t.LeaseDuration > MaxLeaseDuration:
		errs = append(errs, fmt.Errorf("LeaseDuration %v is longer than the maximum %v (a crashed holder blocks everyone that long)", t.LeaseDuration, MaxLeaseDuration))
	}
	if t.RenewDeadline <= 0 {
		errs = append(errs, fmt.Errorf("RenewDeadline %v must be positive", t.RenewDeadline))
	} else if t.RenewDeadline >= t.LeaseDuration {
		errs = append(errs, fmt.Errorf("RenewDeadline %v must be less than LeaseDuration %v", t.RenewDeadline, t.LeaseDuration))
	}
	if t.RetryPeriod <= 0 {
		errs = append(errs, fmt.Errorf("RetryPeriod %v must be positive", t.RetryPeriod))
	} else if t.RetryPeriod >= t.RenewDeadline && t.RenewDeadline > 0 {
		errs = append(errs, fmt.Errorf("RetryPeriod %v must be less than RenewDeadline %v, or a single failed renewal ends the term", t.RetryPeriod, t.RenewDeadline))
	}
	return errors.Join(errs...)
}

// Config is what election and lock share: which Lease, who holds it, the
// timing and the clock. Their public Config types carry these fields and
// convert to this one, so that defaults and validation exist once.
type Config struct {
	Leases          coordinationv1client.LeasesGetter
	Namespace, Name string
	Identity        string
	Timing          Timing
	Clock           clock.Clock
	Logger          logr.Logger
}

// Complete returns c with defaults applied, or every problem found, each
// naming the field and its value. defaultIdentity supplies the identity when
// none is set.
func (c Config) Complete(defaultIdentity func() (string, error)) (Config, error) {
	var errs []error
	if c.Leases == nil {
		errs = append(errs, errors.New("Leases is required (for example clientset.CoordinationV1())"))
	}
	errs = append(errs, ValidateRef(c.Namespace, c.Name)...)
	if c.Identity == "" {
		id, err := defaultIdentity()
		if err != nil {
			errs = append(errs, fmt.Errorf("Identity is empty and no default could be found: %w", err))
		}
		c.Identity = id
	}
	c.Timing = c.Timing.WithDefaults()
	errs = append(errs, c.Timing.Validate())
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	return c, errors.Join(errs...)
}

// ValidateRef checks the fields that name a Lease: Namespace must be a
// namespace name and Name a valid object name.
func ValidateRef(namespace, name string) []error {
	var errs []error
	if namespace == "" {
		errs = append(errs, errors.New("Namespace is required"))
	} else if msgs := validation.IsDNS1123Label(namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("Namespace %q is not a valid namespace name: %v", namespace, msgs))
	}
	if name == "" {
		return append(errs, errors.New("Name is required"))
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("Name %q is not a valid Lease name: %v", name, msgs))
	}
	return errs
}

// DefaultIdentity returns the POD_NAME environment variable if set, else the
// hostname.
func DefaultIdentity() (string, error) {
	if id := os.Getenv("POD_NAME"); id != "" {
		return id, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("hostname: %w", err)
	}
	if h == "" {
		return "", errors.New("hostname is empty")
	}
	return h, nil
}
