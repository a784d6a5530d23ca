package lease

import (
	"errors"
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Default timing, client-go's recommended values, so that mixed fleets agree.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// WithDefaults returns t with every zero field set to its default.
func (t Timing) WithDefaults() Timing {
	if t.LeaseDuration == 0 {
		t.LeaseDuration = DefaultLeaseDuration
	}
	if t.RenewDeadline == 0 {
		t.RenewDeadline = DefaultRenewDeadline
	}
	if t.RetryPeriod == 0 {
		t.RetryPeriod = DefaultRetryPeriod
	}
	return t
}

// ValidateRef checks the fields that name a Lease in a config: Namespace
// must be a namespace name and Name a valid object name. The errors name the
// field and the value.
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
