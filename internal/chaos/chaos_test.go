package chaos_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/candidate"
	"github.com/leasehold/leasehold/internal/chaos"
	"github.com/leasehold/leasehold/internal/testenv"
)

// candidateEnv makes the test binary run as a candidate process instead of
// running tests.
const candidateEnv = "LEASEHOLD_TEST_CANDIDATE"

func TestMain(m *testing.M) {
	if os.Getenv(candidateEnv) == "1" && len(os.Args) > 1 && os.Args[1] == candidate.Arg {
		os.Exit(candidate.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// newEnv starts a control plane. Fleets with Python members need
// env.Python, which is left empty (and noPython says why) when the Python
// candidate cannot run here.
func newEnv(t *testing.T) (env chaos.Env, noPython error) {
	cp := testenv.Start(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env = chaos.Env{
		CP: cp, Argv0: []string{self, candidate.Arg}, Environ: []string{candidateEnv + "=1"},
		Dir: t.TempDir(),
	}
	env.Python, noPython = candidate.PythonCommand(".")
	begin := time.Now()
	env.Logf = func(format string, args ...any) {
		t.Logf("%6.1fs "+format, append([]any{time.Since(begin).Seconds()}, args...)...)
	}
	env.Logf("control plane up")
	return env, noPython
}

// Whole-second LeaseDuration (the Lease stores seconds); one second between
// RenewDeadline and LeaseDuration absorbs scheduling delays of
// race-instrumented processes on a small machine.
var ciTiming = chaos.Timing{LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 250 * time.Millisecond}

// mixedTiming is for fleets with client-go members: a client-go observer
// may date a renewal up to a second early, so RenewDeadline on the slowest
// Leasehold clock must end before LeaseDuration-1s (Schedule.Tolerated).
var mixedTiming = chaos.Timing{LeaseDuration: 3 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 300 * time.Millisecond}

// TestIntegrationChaosLeasehold runs a few seeded fault schedules against
// Leasehold electors and lock holders, Python electors, and a fleet of one
// Python, one Go Leasehold and one client-go elector, each behind its own
// fault proxy, with Leasehold (Go and Python) clocks running up to 15% fast
// or slow (within the documented bound for each timing), writing to a
// fenced resource while they lead; it fails on any overlap of terms (other
// than a frozen holder's), token going backwards or stale write accepted
// that is blamed on a Leasehold member (client-go's are logged), and on a
// run that cannot vouch for anything (checkHarness). The Python runs are
// skipped when /usr/bin/python3 cannot import the kubernetes client.
func TestIntegrationChaosLeasehold(t *testing.T) {
	env, noPython := newEnv(t)
	for _, run := range []struct {
		seed     uint64
		impl     string
		duration time.Duration
		timing   chaos.Timing
	}{
		{1, "leasehold", 12 * time.Second, ciTiming}, {2, "leasehold", 12 * time.Second, ciTiming},
		{3, "leasehold", 12 * time.Second, ciTiming}, {4, "lock", 12 * time.Second, ciTiming},
		// degrade then partition, pause
		{9, "python", 8 * time.Second, ciTiming},
		// pause, degrade then partition
		{13, "mixed-python", 8 * time.Second, mixedTiming},
	} {
		t.Run(fmt.Sprintf("%s/seed=%d", run.impl, run.seed), func(t *testing.T) {
			if strings.Contains(run.impl, "python") && noPython != nil {
				t.Skip(noPython)
			}
			seed := run.seed
			sched := chaos.Generate(seed, 3, run.duration, run.timing).Skew(0.15)
			t.Logf("%s: schedule %s", run.impl, sched)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			res, err := chaos.Run(ctx, env, run.impl, sched)
			cancel()
			if err != nil {
				t.Fatalf("seed %d: %v%s", seed, err, recorded(res))
			}
			t.Logf("seed %d: %d terms, faults %v, clocks x%.2f, %d paused overlaps, %d writes (%d fenced), max without leader after heal %v (whole run %v), errors %v",
				seed, res.Terms, res.Injected, res.RateRatio, len(res.PausedOverlaps), res.Fence.Writes, len(res.Fence.Fenced), res.MaxNoLeader, res.MaxNoLeaderAll, res.Errors)
			checkHarness(t, res)
			v := res.Violations()
			if len(v) > res.Blame["client-go"] {
				t.Errorf("seed %d: safety violations blamed on Leasehold members (blame %v):\n%s", seed, res.Blame, strings.Join(v, "\n"))
			} else if len(v) > 0 {
				t.Logf("seed %d: %d violations, all blamed on client-go members:\n%s", seed, len(v), strings.Join(v, "\n"))
			}
			if !res.Tolerated {
				t.Errorf("seed %d: clock rates x%.2f apart, beyond the documented bound", seed, res.RateRatio)
			}
			if res.MaxNoLeader >= sched.Tail {
				t.Errorf("seed %d: no leader at all in the %v after the last fault healed", seed, sched.Tail)
			}
		})
	}
}

// TestIntegrationChaosControl shows that the harness can fail: the same
// candidates with a protection switched off, under a partition of the
// leader longer than the lease, must be reported.
func TestIntegrationChaosControl(t *testing.T) {
	env, _ := newEnv(t)
	sched := chaos.Schedule{Seed: 7, Candidates: 3, Timing: ciTiming, Tail: 2 * time.Second,
		Faults: []chaos.Fault{{Kind: chaos.Partition, Gap: 500 * time.Millisecond, Dur: 2*ciTiming.LeaseDuration + time.Second, Leader: true}}}

	// Without the hard deadline the partitioned leader works on until it
	// can read the Lease again: overlapping terms. Fencing still rejects its
	// writes once the new leader has written.
	env.NoDeadline = true
	res, err := chaos.Run(context.Background(), env, "leasehold", sched)
	if err != nil {
		t.Fatalf("%v%s", err, recorded(res))
	}
	checkHarness(t, res)
	t.Logf("no deadline: %d overlaps, %d writes fenced, %d stale", len(res.Overlaps), len(res.Fence.Fenced), len(res.Fence.Stale))
	if len(res.Overlaps) == 0 || len(res.Fence.Fenced) == 0 || len(res.Fence.Stale) != 0 {
		t.Errorf("without the hard deadline: overlaps %q, fenced writes %d, stale writes %q; want overlaps, fenced writes and no stale write",
			res.Overlaps, len(res.Fence.Fenced), res.Fence.Stale)
	}

	// Without fencing as well, the resource takes the old leader's writes.
	env.NoFencing = true
	res, err = chaos.Run(context.Background(), env, "leasehold", sched)
	if err != nil {
		t.Fatalf("%v%s", err, recorded(res))
	}
	checkHarness(t, res)
	t.Logf("no deadline, no fencing: %d overlaps, %d writes fenced, %d stale", len(res.Overlaps), len(res.Fence.Fenced), len(res.Fence.Stale))
	if len(res.Fence.Stale) == 0 || len(res.Fence.Fenced) != 0 {
		t.Errorf("without fencing: stale writes %d, fenced writes %d; want stale writes and none fenced", len(res.Fence.Stale), len(res.Fence.Fenced))
	}
}

// checkHarness fails the test on what keeps a run from vouching for
// anything, whatever the checker found: harness errors (a candidate that
// exited with an error or crashed), faults that failed to apply, processes
// left over, writes outside every term of their writer, and a run with no
// term or no accepted write.
func checkHarness(t *testing.T, res *chaos.Result) {
	t.Helper()
	if len(res.Errors) > 0 {
		t.Errorf("seed %d: harness errors:\n%s", res.Seed, strings.Join(res.Errors, "\n"))
	}
	for kind, errs := range res.Failed {
		if len(errs) > 0 {
			t.Errorf("seed %d: %s faults failed to apply:\n%s", res.Seed, kind, strings.Join(errs, "\n"))
		}
	}
	if len(res.Leftover) > 0 {
		t.Errorf("seed %d: processes left over:\n%s", res.Seed, strings.Join(res.Leftover, "\n"))
	}
	if res.Fence.Orphans > 0 {
		t.Errorf("seed %d: %d writes outside every term of their writer", res.Seed, res.Fence.Orphans)
	}
	if res.Terms == 0 || res.Fence.Accepted == 0 {
		t.Errorf("seed %d: %d terms, %d writes accepted: nothing to check", res.Seed, res.Terms, res.Fence.Accepted)
	}
}

// recorded describes what a run that failed had recorded.
func recorded(res *chaos.Result) string {
	if res == nil {
		return ""
	}
	return fmt.Sprintf(" (faults injected %v, failed %v; harness errors %q; left over %q)", res.Injected, res.Failed, res.Errors, res.Leftover)
}
