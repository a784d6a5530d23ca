package main

import (
	"fmt"
	"time"
)

// restartPolicy says when run starts COMMAND again after it exited on its
// own while leading (--restart).
type restartPolicy string

const (
	restartNever     restartPolicy = "never"      // run exits with COMMAND's status
	restartOnFailure restartPolicy = "on-failure" // again unless it exited 0
	restartAlways    restartPolicy = "always"     // again whatever its status
)

var restartPolicies = []string{string(restartNever), string(restartOnFailure), string(restartAlways)}

// String and Set make restartPolicy a pflag.Value, so a bad value is
// refused while flags are parsed, naming the flag and the valid values.
func (p *restartPolicy) String() string { return string(*p) }

func (p *restartPolicy) Set(s string) error {
	switch restartPolicy(s) {
	case restartNever, restartOnFailure, restartAlways:
		*p = restartPolicy(s)
		return nil
	}
	return fmt.Errorf("must be one of %s", restartPolicies)
}

func (p *restartPolicy) Type() string { return "policy" }

// restarts reports whether COMMAND is started again after exiting with code.
func (p restartPolicy) restarts(code int) bool {
	return p == restartAlways || (p == restartOnFailure && code != ExitOK)
}

// backoff is the delay before each restart of a COMMAND that keeps exiting:
// it starts at initial, doubles with every exit that follows a short run,
// and is capped at max. A run that lasted at least max counts as healthy
// and starts the sequence over, as the kubelet's crash-loop back-off does.
type backoff struct {
	initial, max time.Duration
	next         time.Duration // 0: the next delay is initial
}

// after returns the delay before the next start, given how long the
// command ran before it exited.
func (b *backoff) after(ran time.Duration) time.Duration {
	if b.next == 0 || ran >= b.max {
		b.next = b.initial
	}
	d := min(b.next, b.max)
	b.next = min(2*d, b.max)
	return d
}
