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
	// Degrade is a link that degrades and then drops: replies delayed by just
	// under RenewDeadline (so renewals still succeed, late), then a partition
	// longer than the lease. Replies already in flight when the partition
	// begins are still delivered. A leader that counts its deadline from when
	// a renewal's reply arrived (client-go) outlives its lease by up to the
	// delay; one that counts from when the renewal was sent does not.
	Degrade Kind = "degrade"
	// APIRestart restarts kube-apiserver (same address and etcd).
	APIRestart Kind = "apiserver-restart"
	// EtcdRestart restarts etcd (same address and data) under a running
	// kube-apiserver.
	EtcdRestart Kind = "etcd-restart"
	// ContainerKill SIGKILLs the main process of the leading pod's
	// container on the real node (test/e2e); the kubelet reports it
	// terminated and starts it again.
	ContainerKill Kind = "container-kill"
	// KubeletStop freezes the real node's kubelet (SIGSTOP) for Dur and
	// SIGKILLs the leading container meanwhile, so the Pod's status says it
	// runs when it does not (stale); then SIGCONT.
	KubeletStop Kind = "kubelet-stop"
	// PodDelete deletes the leading pod on the real node (the kubelet sends
	// SIGTERM; the leader hands over).
	PodDelete Kind = "pod-delete"
	// ClockRate is not a step of the schedule: it counts the Leasehold
	// candidates whose elector's clock runs fast or slow for the whole run
	// (Schedule.Rates).
	ClockRate Kind = "clock-rate"
)

// Kinds lists every fault kind a schedule draws from, in a fixed order.
var Kinds = []Kind{ReqLatency, RespLatency, Degrade, Partition, Reset, Pause, Kill, APIRestart, EtcdRestart}

// NodeKinds are the kinds a schedule on the real node draws from: a fleet
// of pods (test/e2e), where Partition cuts the leading pod off from the
// apiserver with iptables in its network namespace.
var NodeKinds = []Kind{ContainerKill, KubeletStop, Partition, PodDelete}

// Timing is the election timing the candidates run with.
type Timing struct{ LeaseDuration, RenewDeadline, RetryPeriod time.Duration }

// Fault is one step of a schedule: wait Gap, then apply the fault for Dur
// (Delay is the added latency of latency faults), then heal it.
type Fault struct {
	Kind  Kind
	Gap   time.Duration
	Dur   time.Duration
	Delay time.Duration
	// Then is how long the partition that ends a Degrade lasts.
	Then time.Duration
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
	if f.Then > 0 {
		s += fmt.Sprintf(", then partition for %v", f.Then.Round(time.Millisecond))
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
	// Rates are the clock rates of the candidates in each slot (1 = exact;
	// 0.9 = 10% slow), applied to Leasehold candidates only: client-go's
	// elector has no injectable clock. Nil means all exact.
	Rates []float64
}

// Rate returns the clock rate of slot i.
func (s Schedule) Rate(i int) float64 {
	if i < len(s.Rates) && s.Rates[i] > 0 {
		return s.Rates[i]
	}
	return 1
}

// Tolerated reports whether the clock rates are within what lease/doc.go
// documents as tolerated, for a fleet whose Leasehold candidates are in the
// given slots and whose other slots are client-go candidates on the real
// clock: a Leasehold holder's RenewDeadline, on the slowest Leasehold clock,
// must end before any observer's LeaseDuration on the fastest clock. A
// client-go observer on a fleet renewing more often than once a second
// dates a change up to a second early (lease/doc.go, mixed fleets), so it
// counts LD−1s. Without mixing that is the fastest over the slowest clock
// below LD/RD. It also returns the fastest over the slowest Leasehold
// holder's clock, client-go's real clocks included.
func (s Schedule) Tolerated(leasehold []int) (bool, float64) {
	lh := map[int]bool{}
	slowest := 0.0
	for _, i := range leasehold {
		lh[i] = true
		if r := s.Rate(i); slowest == 0 || r < slowest {
			slowest = r
		}
	}
	if slowest == 0 {
		return true, 1
	}
	ld, rd := s.Timing.LeaseDuration.Seconds(), s.Timing.RenewDeadline.Seconds()
	deadline := rd / slowest // real seconds
	takeover, fastest := 0.0, 0.0
	for i := range s.Candidates {
		rate, t := 1.0, ld
		if lh[i] {
			rate = s.Rate(i)
			t = ld / rate
		} else if s.Timing.RetryPeriod < time.Second {
			t = ld - 1
		}
		if takeover == 0 || t < takeover {
			takeover = t
		}
		fastest = max(fastest, rate)
	}
	return deadline < takeover, fastest / slowest
}

// Skew returns s with a clock rate drawn for every slot, uniformly from
// [1-drift, 1+drift] (drift < 1), from the schedule's seed: the same seed
// and drift give the same rates.
func (s Schedule) Skew(drift float64) Schedule {
	if drift <= 0 {
		s.Rates = nil
		return s
	}
	rng := rand.New(rand.NewPCG(s.Seed^0x5bd1e995, s.Seed))
	s.Rates = make([]float64, s.Candidates)
	for i := range s.Rates {
		s.Rates[i] = 1 - drift + 2*drift*rng.Float64()
	}
	return s
}

func (s Schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %d candidates, LD %v RD %v RP %v:", s.Seed, s.Candidates, s.Timing.LeaseDuration, s.Timing.RenewDeadline, s.Timing.RetryPeriod)
	if len(s.Rates) > 0 {
		b.WriteString("\n  clock rates")
		for i := range s.Candidates {
			fmt.Fprintf(&b, " c%d=%.3f", i, s.Rate(i))
		}
	}
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
	s := Schedule{Seed: seed, Candidates: candidates, Timing: t, Tail: 2*ld + time.Second}
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
		case Degrade:
			f.Leader = true
			f.Delay = between(rd*7/10, rd)
			f.Dur = between(time.Second, ld)
			f.Then = between(ld+500*time.Millisecond, 2*ld+time.Second)
		case Partition, Pause, KubeletStop:
			f.Leader = true
			f.Dur = between(ld+500*time.Millisecond, 2*ld+time.Second)
		case Kill:
			f.Leader = true
			f.Dur = between(0, ld)
		case ContainerKill, PodDelete:
			f.Leader = true
		case Reset, APIRestart, EtcdRestart:
		}
		s.Faults = append(s.Faults, f)
		total += f.Gap + f.Dur + f.Then
	}
	return s
}
