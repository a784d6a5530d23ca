package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/leasehold/leasehold/internal/holder"
)

// Checks of flag values and arguments. Each problem names the flag (or
// argument) and the value the user gave, once, and says what is allowed;
// the commands return them as usage errors (exit status 2).

// maxPermits bounds lock --permits: each permit is a Lease of its own, and
// a waiting lock reads and watches every one of them.
const maxPermits = 64

// timingFlags names the flags a command takes its timing from; "" for a
// value the command always derives.
type timingFlags struct {
	lease, renew, retry string
}

// completeTiming checks the timing the user set and derives the rest as
// holder.Timing.WithDefaults does: the renew deadline is 2/3 of the lease
// duration and the retry period a fifth of the renew deadline, unless set.
// A derived value is never reported as wrong: the message names the flag
// the user set.
func completeTiming(fs *pflag.FlagSet, names timingFlags, lease, renew, retry time.Duration) (holder.Timing, []error) {
	set := func(name string) bool { return name != "" && fs.Changed(name) }
	var errs []error
	switch {
	case lease < time.Second:
		errs = append(errs, fmt.Errorf("--%s %s: must be at least 1s", names.lease, shortDuration(lease)))
	case lease%time.Second != 0:
		errs = append(errs, fmt.Errorf("--%s %s: must be a whole number of seconds (the Lease stores seconds)", names.lease, shortDuration(lease)))
	case lease > holder.MaxLeaseDuration:
		errs = append(errs, fmt.Errorf("--%s %s: must be at most %s (a crashed holder blocks everyone that long)", names.lease, shortDuration(lease), shortDuration(holder.MaxLeaseDuration)))
	}
	t := holder.Timing{LeaseDuration: lease}
	if set(names.renew) {
		t.RenewDeadline = renew
		switch {
		case renew <= 0:
			errs = append(errs, fmt.Errorf("--%s %s: must be positive", names.renew, shortDuration(renew)))
		case renew >= lease && len(errs) == 0:
			errs = append(errs, fmt.Errorf("--%s %s: must be less than --%s %s, by the margin that absorbs clock-rate differences (default 2/3 of it)",
				names.renew, shortDuration(renew), names.lease, shortDuration(lease)))
		}
	}
	if set(names.retry) {
		t.RetryPeriod = retry
		if retry <= 0 {
			errs = append(errs, fmt.Errorf("--%s %s: must be positive", names.retry, shortDuration(retry)))
		}
	}
	if len(errs) > 0 {
		return t, errs
	}
	t = t.WithDefaults()
	if t.RetryPeriod >= t.RenewDeadline {
		deadline := "--" + names.renew + " " + shortDuration(t.RenewDeadline)
		if !set(names.renew) {
			deadline = fmt.Sprintf("the renew deadline %s (2/3 of --%s; set --%s to change it)", shortDuration(t.RenewDeadline.Round(time.Millisecond)), names.lease, names.renew)
		}
		errs = append(errs, fmt.Errorf("--%s %s: must be less than %s, or a single failed renewal ends the term", names.retry, shortDuration(retry), deadline))
	}
	if err := t.Validate(); err != nil && len(errs) == 0 {
		errs = append(errs, err) // not expected: the checks above cover Validate
	}
	return t, errs
}

// nonNegative checks a duration flag that must not be negative.
func nonNegative(name string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("--%s %s: must not be negative", name, shortDuration(d))
	}
	return nil
}

// checkPermits checks lock --permits.
func checkPermits(n int) error {
	switch {
	case n < 1:
		return fmt.Errorf("--permits %d: must be at least 1 (1 is a plain lock, more a semaphore)", n)
	case n > maxPermits:
		return fmt.Errorf("--permits %d: must be at most %d: each permit is a Lease of its own, and a waiting lock reads and watches every one", n, maxPermits)
	}
	return nil
}

// checkListenAddr checks an address to listen on, such as --http.
func checkListenAddr(flag, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if ae, ok := err.(*net.AddrError); ok {
		err = errors.New(ae.Err) // without the address, which the message shows
	}
	if err == nil {
		err = checkPort(port)
	}
	if err != nil {
		return fmt.Errorf("--%s %q: want host:port or :port (:0 picks a free port): %w", flag, addr, err)
	}
	return nil
}

func checkPort(port string) error {
	if port == "" {
		return errors.New("missing port")
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 0 || n > 65535 {
			return fmt.Errorf("port %d is not in 0-65535", n)
		}
		return nil
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("port %q is neither a number nor a known service name", port)
	}
	return nil
}

// checkLeaseName checks a Lease name given as what (an argument or a flag).
func checkLeaseName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%s: the Lease name must not be empty", what)
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return fmt.Errorf("%s %q is not a valid Lease name: %s", what, name, strings.Join(msgs, "; "))
	}
	return nil
}
