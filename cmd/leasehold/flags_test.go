package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/internal/testenv"
)

// TestUsageErrors: a bad flag value or argument is a usage error (exit 2)
// whose message names the flag or argument and the value given, once, and
// says what is allowed; no value the user did not set is blamed.
func TestUsageErrors(t *testing.T) {
	cp := testenv.Start(t)
	for _, tc := range []struct {
		args   []string
		want   string
		reject []string // must not appear in the message
	}{
		// Permits are bounded: each is a Lease and a watch.
		{[]string{"lock", "x", "--permits", "0", "--", "true"}, "--permits 0: must be at least 1", []string{"--timeout", "--grace"}},
		{[]string{"lock", "x", "--permits", "100000", "--wait=false", "--", "true"}, "--permits 100000: must be at most 64", nil},
		// Durations: one rule for every duration flag.
		{[]string{"run", "--lease", "x", "--lease-duration", "596524h", "--", "true"}, "--lease-duration 596524h: must be at most 24h", []string{"LeaseDuration"}},
		{[]string{"run", "--lease", "x", "--lease-duration", "100000h", "--", "true"}, "--lease-duration 100000h: must be at most 24h", nil},
		{[]string{"lock", "x", "--ttl", "2000000h", "--", "true"}, "--ttl 2000000h: must be at most 24h", []string{"RenewDeadline", "RetryPeriod"}},
		{[]string{"lock", "x", "--ttl", "0", "--", "true"}, "--ttl 0s: must be at least 1s", nil},
		{[]string{"run", "--lease", "x", "--lease-duration", "0", "--", "true"}, "--lease-duration 0s: must be at least 1s", nil},
		{[]string{"run", "--lease", "x", "--lease-duration", "2s", "--renew-deadline", "3s", "--", "true"}, "--renew-deadline 3s: must be less than --lease-duration 2s", nil},
		{[]string{"run", "--lease", "x", "--lease-duration", "5s", "--retry-period", "4s", "--", "true"}, "--retry-period 4s: must be less than the renew deadline 3.333s", nil},
		{[]string{"handoff", "x", "--to", "y", "--wait", "-1s"}, "--wait -1s: must not be negative", nil},
		{[]string{"lock", "x", "--grace", "-1s", "--", "true"}, "--grace -1s: must not be negative", nil},
		{[]string{"run", "--lease", "x", "--http", "nonsense", "--", "true"}, `--http "nonsense": want host:port`, nil},
		{[]string{"run", "--lease", "x", "--http", ":99999", "--", "true"}, `--http ":99999"`, nil},
		// Kubeconfig flags name the flag, not the layer that read it.
		{[]string{"--context", "nosuch", "get"}, `--context "nosuch": no such context in the kubeconfig`, []string{"invalid configuration"}},
		{[]string{"--context", "nosuch", "run", "--lease", "x", "--", "true"}, `--context "nosuch": no such context`, []string{"namespace:"}},
		{[]string{"--request-timeout", "abc", "get"}, `--request-timeout "abc": not a duration`, []string{"no usable cluster configuration"}},
		// Lease names.
		{[]string{"get", ""}, "a Lease name must not be empty", []string{"NewClient"}},
		{[]string{"release", ""}, "NAME: the Lease name must not be empty", []string{"NewClient"}},
		{[]string{"lock", "Not_A_Name", "--", "true"}, `NAME "Not_A_Name" is not a valid Lease name`, nil},
	} {
		r := cliWithin(t, cp, 20*time.Second, tc.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("leasehold %q: exit %d, stderr %q; want %d and %q", tc.args, r.code, r.stderr, ExitUsage, tc.want)
		}
		msg := strings.TrimPrefix(r.stderr, "leasehold: ")
		for _, bad := range tc.reject {
			if strings.Contains(strings.ReplaceAll(msg, tc.want, ""), bad) {
				t.Errorf("leasehold %q: stderr %q mentions %q", tc.args, r.stderr, bad)
			}
		}
	}
}

// TestDerivedTiming: only --lease-duration is needed; the renew deadline
// and retry period scale from it unless set. And valid values at the bounds
// work.
func TestDerivedTiming(t *testing.T) {
	cp := testenv.Start(t)
	for _, args := range [][]string{
		{"run", "--lease", "derived", "--lease-duration", "5s", "--", "true"},
		{"run", "--lease", "derived", "--lease-duration", "1s", "--", "true"},
		{"run", "--lease", "derived", "--lease-duration", "5s", "--renew-deadline", "4s", "--", "true"},
		{"lock", "derived", "--ttl", "1s", "--", "true"},
		// The most permits allowed are read and watched within the bound
		// of --wait=false.
		{"lock", "many", "--permits", "64", "--wait=false", "--", "true"},
	} {
		if r := cliWithin(t, cp, 30*time.Second, args...); r.code != 0 {
			t.Errorf("leasehold %q: exit %d, stderr %q; want 0", args, r.code, r.stderr)
		}
	}
}

// TestAPIErrorText: an API error names the Lease, the verb and the fix once,
// without the prefixes of every layer it passed through; a release by
// another process is reported as a release, not as a takeover.
func TestAPIErrorText(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	createHeldLease(t, cs, "held", "someone", 1)
	token, err := cp.ServiceAccountToken(t.Context(), "default", "reader", readOnlyRules())
	if err != nil {
		t.Fatal(err)
	}
	r := cliWithin(t, cp, 20*time.Second, "--token", token, "release", "held", "--force")
	want := `forbidden: user "system:serviceaccount:default:reader" may not update lease default/held: RBAC must allow verb "update"`
	if r.code != ExitError || !strings.Contains(r.stderr, want) {
		t.Errorf("release without update: exit %d, stderr %q; want %d and %q", r.code, r.stderr, ExitError, want)
	}
	for _, bad := range []string{"lease:", "leases.coordination.k8s.io", "cannot update resource"} {
		if strings.Contains(r.stderr, bad) {
			t.Errorf("release without update: stderr %q repeats %q", r.stderr, bad)
		}
	}

	p := startCLI(t, cp, "lock", "released", "--identity", "holder", "--ttl", "30s", "--", "sh", "-c", holds)
	p.Stdout.WaitFor(t, "ready", 20*time.Second)
	if r := cli(t, cp, "release", "released", "--identity", "holder"); r.code != 0 {
		t.Fatalf("release: exit %d, stderr %q", r.code, r.stderr)
	}
	if code := p.Wait(t); code != ExitLost {
		t.Errorf("lock exited %d after its lease was released, want %d", code, ExitLost)
	}
	if s := p.Stderr.String(); !strings.Contains(s, "released by another process") || strings.Contains(s, "lost to another holder") {
		t.Errorf("lock's stderr %q: want the release reported as one, not as a takeover", s)
	}
}

func TestCompleteTiming(t *testing.T) {
	names := timingFlags{lease: "lease-duration", renew: "renew-deadline", retry: "retry-period"}
	for _, tc := range []struct {
		name       string
		set        []string // flags given on the command line
		ld, rd, rp time.Duration
		want       holder.Timing
		err        string
	}{
		{"defaults", nil, 15 * time.Second, 10 * time.Second, 2 * time.Second,
			holder.Timing{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}, ""},
		{"derived from the lease duration", []string{"lease-duration"}, 6 * time.Second, 10 * time.Second, 2 * time.Second,
			holder.Timing{LeaseDuration: 6 * time.Second, RenewDeadline: 4 * time.Second, RetryPeriod: 800 * time.Millisecond}, ""},
		{"retry period derived from a renew deadline set", []string{"lease-duration", "renew-deadline"}, 6 * time.Second, 5 * time.Second, 2 * time.Second,
			holder.Timing{LeaseDuration: 6 * time.Second, RenewDeadline: 5 * time.Second, RetryPeriod: time.Second}, ""},
		{"all set", []string{"lease-duration", "renew-deadline", "retry-period"}, 6 * time.Second, 5 * time.Second, 3 * time.Second,
			holder.Timing{LeaseDuration: 6 * time.Second, RenewDeadline: 5 * time.Second, RetryPeriod: 3 * time.Second}, ""},
		{"too long", []string{"lease-duration"}, 25 * time.Hour, 0, 0, holder.Timing{}, "--lease-duration 25h: must be at most 24h"},
		{"fractional", []string{"lease-duration"}, 1500 * time.Millisecond, 0, 0, holder.Timing{}, "--lease-duration 1.5s: must be a whole number of seconds"},
		{"zero renew deadline", []string{"renew-deadline"}, 15 * time.Second, 0, 0, holder.Timing{}, "--renew-deadline 0s: must be positive"},
		{"negative retry period", []string{"retry-period"}, 15 * time.Second, 0, -time.Second, holder.Timing{}, "--retry-period -1s: must be positive"},
		{"retry period over a derived deadline", []string{"retry-period"}, 3 * time.Second, 0, 2 * time.Second, holder.Timing{},
			"--retry-period 2s: must be less than the renew deadline 2s (2/3 of --lease-duration; set --renew-deadline to change it)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			fs.Duration("lease-duration", 0, "")
			fs.Duration("renew-deadline", 0, "")
			fs.Duration("retry-period", 0, "")
			for _, f := range tc.set {
				fs.Lookup(f).Changed = true
			}
			got, errs := completeTiming(fs, names, tc.ld, tc.rd, tc.rp)
			err := errors.Join(errs...)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want %q", err, tc.err)
			case tc.err == "" && got != tc.want:
				t.Errorf("timing %+v, want %+v", got, tc.want)
			}
		})
	}
}
