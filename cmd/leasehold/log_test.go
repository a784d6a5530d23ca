package main

import (
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/internal/testproc"
)

// stampedLine is a line of leasehold's own on stderr: a timestamp first.
var stampedLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  leasehold: `)

// checkLogLines: every line of leasehold's own starts with a timestamp, and
// COMMAND's lines pass through untouched.
func checkLogLines(t *testing.T, stderr string, childLine string) {
	t.Helper()
	own, child := 0, 0
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		switch {
		case l == childLine:
			child++
		case strings.Contains(l, "leasehold: "):
			own++
			if !stampedLine.MatchString(l) {
				t.Errorf("line without a timestamp: %q", l)
			}
		}
	}
	if own == 0 || child != 1 {
		t.Errorf("%d lines of leasehold's own, %d of the child (want 1); stderr:\n%s", own, child, stderr)
	}
}

func TestLogTimestamps(t *testing.T) {
	cp := testenv.Start(t)

	t.Run("run", func(t *testing.T) {
		r := cli(t, cp, "run", "--lease", "stamps", "--", "sh", "-c", "echo from-the-child >&2").ok(t)
		checkLogLines(t, r.stderr, "from-the-child")
	})

	t.Run("lock", func(t *testing.T) {
		p := testproc.Start(t, exec.Command(binary, "--kubeconfig", cp.Kubeconfig, "lock", "stamps-lock", "--", "sh", "-c", "echo from-the-child >&2; exec sleep 60"))
		p.Stderr.WaitFor(t, "from-the-child", 30*time.Second)
		p.Signal(syscall.SIGTERM)
		p.Wait(t)
		checkLogLines(t, p.Stderr.String(), "from-the-child")
	})
}

// TestVerbosity: -v and --v set klog's verbosity, as in kubectl: 6 logs the
// API requests, 1 the elector's state changes; by default neither.
func TestVerbosity(t *testing.T) {
	cp := testenv.Start(t)
	const request = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
	for _, args := range [][]string{{"-v", "6", "get"}, {"get", "--v=6"}, {"get", "-v6"}} {
		if r := cli(t, cp, args...).ok(t); !strings.Contains(r.stderr, request) {
			t.Errorf("%q: no request logged:\n%s", args, r.stderr)
		}
	}
	if r := cli(t, cp, "get").ok(t); strings.Contains(r.stderr, request) {
		t.Errorf("requests logged without -v:\n%s", r.stderr)
	}
	r := cli(t, cp, "run", "-v", "1", "--lease", "verbose", "--", "true").ok(t)
	if !strings.Contains(r.stderr, `"became leader"`) {
		t.Errorf("run -v 1 does not log the elector's state changes:\n%s", r.stderr)
	}
	r = cli(t, cp, "run", "--lease", "quiet", "--", "true").ok(t)
	if strings.Contains(r.stderr, `"became leader"`) {
		t.Errorf("run logs the elector's state changes without -v:\n%s", r.stderr)
	}
}
