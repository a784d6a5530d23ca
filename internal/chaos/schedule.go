package chaos

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The fault kinds. Each is applied to one candidate (the leader at the time
// unless the schedule names another), except APIRestart.
const (
	// ReqLatency delays bytes from the candidate to the apiserver.
	ReqLatency Kind = "req-latency"
	// RespLatency delays bytes back to the candidate, e.g. past RenewDeadline
	// so that a renewal's reply comes back late.
	RespLatency Kind = "resp-latency"
	// Partition blackholes the candidate's connections for longer than the
	// lease.
	Partition Kind = "partition"
	// Reset resets every connection of the candidate.
	Reset Kind = "reset"
	// Pause stops the candidate with SIGSTOP, longer than the lease, then
	// SIGCONT.
	Pause Kind = "pause"
	// Kill sends SIGKILL and starts a new process in its place.
	Kill Kind = "kill"
	// APIRestart restarts kube-apiserver (same address and etcd).
	APIRestart Kind = "apiserver-restart"
)

// Kinds lists every fault kind, in a fixed order.
var Kinds = []Kind{ReqLatency, RespLatency, Partition, Reset, Pause, Kill, APIRestart}

// Timing is the election timing the candidates run with.
type Timing struct{ LeaseDuration, RenewDeadline, RetryPeriod time.Duration }

// Fault is one step of a schedule: wait Gap, then apply the fault for Dur
// (Delay is the added latency of latency faults), then heal it.
type Fault struct {
	Kind  Kind
	Gap   time.Duration
	Dur   time.Duration
	Delay time.Duration
	// Leader: target the leader at the time the fault begins (waiting up to
	// two lease durations for one); Target is used when there is none, or
	// when Leader is false.
	Leader bool
	Target int
}

func (f Fault) String() string {
	who := fmt.Sprintf("c%d", f.Target)
	if f.Leader {
		who = "leader"
	}
	s := fmt.Sprintf("+%v %s %s", f.Gap.Round(time.Millisecond), f.Kind, who)
	if f.Delay > 0 {
		s += fmt.Sprintf(" delay=%v", f.Delay.Round(time.Millisecond))
	}
	if f.Dur > 0 {
		s += fmt.Sprintf(" for %v", f.Dur.Round(time.Millisecond))
	}
	return s
}

// Schedule is a seeded, reproducible sequence of faults for Candidates
// candidate processes. Faults run one after another; the run ends with a
// quiet Tail in which a leader must emerge.
type Schedule struct {
	Seed       uint64
	Candidates int
	Timing     Timing
	Faults     []Fault
	Tail       time.Duration
}

func (s Schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %d candidates, LD %v RD %v RP %v:", s.Seed, s.Candidates, s.Timing.LeaseDuration, s.Timing.RenewDeadline, s.Timing.RetryPeriod)
	for _, f := range s.Faults {
		b.WriteString("\n  " + f.String())
	}
	fmt.Fprintf(&b, "\n  quiet %v", s.Tail)
	return b.String()
}

// Generate returns the schedule for seed: faults of the given kinds (all if
// none) until about d has passed. The same arguments always give the same
// schedule.
func Generate(seed uint64, candidates int, d time.Duration, t Timing, kinds ...Kind) Schedule {
	if len(kinds) == 0 {
		kinds = Kinds
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	ld, rd := t.LeaseDuration, t.RenewDeadline
	s := Schedule{Seed: seed, Candidates: candidates, Timing: t, Tail: 3*ld + 2*time.Second}
	for total := time.Duration(0); total < d; {
		f := Fault{
			Kind:   kinds[rng.IntN(len(kinds))],
			Gap:    between(t.RetryPeriod, ld+time.Second),
			Leader: rng.IntN(4) != 0, // mostly the leader
			Target: rng.IntN(candidates),
		}
		switch f.Kind {
		case ReqLatency, RespLatency:
			f.Delay = between(rd/2, ld+rd)
			f.Dur = between(time.Second, 2*ld+time.Second)
		case Partition, Pause:
			f.Leader = true
			f.Dur = between(ld+500*time.Millisecond, 2*ld+time.Second)
		case Kill:
			f.Leader = true
			f.Dur = between(0, ld)
		case Reset, APIRestart:
		}
		s.Faults = append(s.Faults, f)
		total += f.Gap + f.Dur
	}
	return s
}
