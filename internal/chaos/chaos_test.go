package chaos_test

import (
	"context"
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

// TestIntegrationChaosLeasehold runs a few seeded fault schedules against
// Leasehold candidates, each behind its own fault proxy, and fails on any
// overlap of terms (other than a frozen holder's, which the fencing replay
// must reject), token going backwards or stale write.
func TestIntegrationChaosLeasehold(t *testing.T) {
	cp := testenv.Start(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := chaos.Env{
		CP: cp, Argv0: []string{self, candidate.Arg}, Environ: []string{candidateEnv + "=1"},
		Dir: t.TempDir(),
	}
	begin := time.Now()
	env.Logf = func(format string, args ...any) {
		t.Logf("%6.1fs "+format, append([]any{time.Since(begin).Seconds()}, args...)...)
	}
	env.Logf("control plane up")
	// Whole-second LeaseDuration (the Lease stores seconds); one second
	// between RenewDeadline and LeaseDuration absorbs scheduling delays of
	// race-instrumented processes on a small machine.
	tm := chaos.Timing{LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 250 * time.Millisecond}
	for _, seed := range []uint64{1, 2, 3} {
		sched := chaos.Generate(seed, 3, 12*time.Second, tm)
		t.Logf("schedule %s", sched)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		res, err := chaos.Run(ctx, env, "leasehold", sched)
		cancel()
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		t.Logf("seed %d: %d terms, faults %v, %d paused overlaps, %d fenced late writes of %d, max without leader after heal %v (whole run %v), errors %v",
			seed, res.Terms, res.Injected, len(res.PausedOverlaps), len(res.Fence.Fenced), res.Fence.Writes, res.MaxNoLeader, res.MaxNoLeaderAll, res.Errors)
		if v := res.Violations(); len(v) > 0 {
			t.Errorf("seed %d: safety violations:\n%s", seed, strings.Join(v, "\n"))
		}
		if len(res.PausedOverlaps) > len(res.Fence.Fenced) {
			t.Errorf("seed %d: %d overlaps by frozen holders but only %d late writes fenced", seed, len(res.PausedOverlaps), len(res.Fence.Fenced))
		}
		if res.Terms == 0 {
			t.Errorf("seed %d: no terms at all", seed)
		}
		if res.MaxNoLeader >= sched.Tail {
			t.Errorf("seed %d: no leader at all in the %v after the last fault healed", seed, sched.Tail)
		}
	}
}
