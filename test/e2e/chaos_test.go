//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/internal/candidate"
	"github.com/leasehold/leasehold/internal/chaos"
	"github.com/leasehold/leasehold/internal/testenv"
)

// ChaosSchedulesEnv sets how many schedules TestChaosOnNode runs (default
// 2); ChaosSeedEnv the first seed (default 1). `make chaos-node` sets both.
const (
	ChaosSchedulesEnv = "LEASEHOLD_CHAOS_NODE_SCHEDULES"
	ChaosSeedEnv      = "LEASEHOLD_CHAOS_NODE_SEED"
)

// nodeTiming is the election timing of the chaos fleets: short, so that a
// schedule holds many faults, and in whole seconds, as the CLI's flags are.
var nodeTiming = chaos.Timing{LeaseDuration: 6 * time.Second, RenewDeadline: 4 * time.Second, RetryPeriod: time.Second}

// nodeResult is the outcome of one schedule on the node.
type nodeResult struct {
	seed     uint64
	injected map[chaos.Kind]int
	failed   []string
	report   chaos.Report
	// failovers are the times from each container kill to the next work
	// starting (another pod's or the restarted container's).
	failovers   []time.Duration
	leaderAtEnd bool
}

func (r nodeResult) ok() bool {
	return len(r.failed) == 0 && len(r.report.Violations()) == 0 && r.leaderAtEnd && r.report.Terms > 0
}

// TestChaosOnNode runs seeded fault schedules (chaos.NodeKinds: container
// kill, kubelet stopped while the leader's container is killed, the leader
// cut off from the apiserver, the leader's pod deleted) against a
// 3-replica Deployment of deploy/base, each in a fresh namespace, and checks
// the terms the workers logged: no two pods ever work at once, tokens only
// grow, and a leader works at the end. It prints one line per schedule and
// a total; every fault must have been applied.
func TestChaosOnNode(t *testing.T) {
	c := node(t)
	n, seed := 2, uint64(1)
	if v, err := strconv.Atoi(os.Getenv(ChaosSchedulesEnv)); err == nil && v > 0 {
		n = v
	}
	if v, err := strconv.ParseUint(os.Getenv(ChaosSeedEnv), 10, 64); err == nil {
		seed = v
	}
	var results []nodeResult
	for i := range n {
		s := chaos.Generate(seed+uint64(i), 3, 40*time.Second, nodeTiming, chaos.NodeKinds...)
		t.Logf("schedule %s", s)
		res := runNodeSchedule(t, c, s)
		results = append(results, res)
		t.Log(nodeLine(res))
		for _, v := range res.report.Violations() {
			t.Errorf("seed %d: %s", res.seed, v)
		}
		for _, f := range res.failed {
			t.Errorf("seed %d: fault not applied: %s", res.seed, f)
		}
		if !res.leaderAtEnd {
			t.Errorf("seed %d: no pod leads at the end", res.seed)
		}
		if res.report.Terms == 0 {
			t.Errorf("seed %d: no term recorded", res.seed)
		}
	}
	fmt.Println(nodeTable(results))
}

// runNodeSchedule runs one schedule in namespace chaos-<seed>.
func runNodeSchedule(t *testing.T, c *testenv.Cluster, s chaos.Schedule) nodeResult {
	ctx := t.Context()
	ns := fmt.Sprintf("chaos-%d", s.Seed)
	tm := s.Timing
	extra := fmt.Sprintf(`patches:
  - target:
      kind: Deployment
      name: worker
    patch: |-
      - op: replace
        path: /spec/replicas
        value: %d
      - op: add
        path: /spec/template/spec/containers/0/args/1
        value: --lease-duration=%s
      - op: add
        path: /spec/template/spec/containers/0/args/1
        value: --renew-deadline=%s
      - op: add
        path: /spec/template/spec/containers/0/args/1
        value: --retry-period=%s
`, s.Candidates, tm.LeaseDuration, tm.RenewDeadline, tm.RetryPeriod)
	f := leaseholdFleet(t, c, ns, "base", extra)
	f.replicas = s.Candidates
	f.steadyLeader(ctx, t)
	addrs, err := APIServerAddresses(ctx, c, f.cs)
	if err != nil {
		t.Fatal(err)
	}
	res := nodeResult{seed: s.Seed, injected: map[chaos.Kind]int{}}
	var kills []Event // synthetic "exited" events: containers this run killed
	var killedAt []int64
	whole := chaos.Window{From: Mono()}
	for _, fault := range s.Faults {
		if err := sleepCtx(ctx, fault.Gap); err != nil {
			t.Fatal(err)
		}
		k, err := applyNodeFault(ctx, c, f, fault, addrs)
		kills = append(kills, k...)
		if fault.Kind == chaos.ContainerKill {
			for _, e := range k {
				killedAt = append(killedAt, e.Mono)
			}
		}
		if err != nil {
			res.failed = append(res.failed, fmt.Sprintf("%s: %v", fault, err))
			continue
		}
		res.injected[fault.Kind]++
	}
	live := chaos.Window{From: Mono()}
	if err := sleepCtx(ctx, s.Tail); err != nil {
		t.Fatal(err)
	}
	live.To, whole.To = Mono(), Mono()
	res.leaderAtEnd = workingAt(f, live.To)
	time.Sleep(time.Second) // lines still on their way from the kubelet
	terms := nodeTerms(f.rec.Events(), kills, whole.To)
	res.report = chaos.CheckRun(terms, nil, nil, tm.RenewDeadline+time.Second, live, whole)
	for _, k := range killedAt {
		for _, tr := range terms {
			if tr.Start >= k {
				res.failovers = append(res.failovers, time.Duration(tr.Start-k))
				break
			}
		}
	}
	return res
}

// workingAt reports whether a pod's work has started and not stopped at
// mono, by the workers' lines (waiting up to a minute for them).
func workingAt(f *fleet, mono int64) bool {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var working []string
		for _, e := range f.rec.Events() {
			if e.Mono > mono {
				break
			}
			if e.Ev == "start" {
				working = append(working, e.Pod)
			} else if i := slices.Index(working, e.Pod); i >= 0 {
				working = slices.Delete(working, i, i+1)
			}
		}
		if len(working) > 0 {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// applyNodeFault applies one fault to the fleet's leading pod (or, when
// nobody leads or the fault names no leader, to its Target'th running pod)
// and heals it. It returns an "exited" event for every container it killed.
func applyNodeFault(ctx context.Context, c *testenv.Cluster, f *fleet, fault chaos.Fault, addrs []string) ([]Event, error) {
	pod, pid, err := targetPod(ctx, f, fault)
	if err != nil {
		return nil, err
	}
	kill := func() ([]Event, error) {
		at := Mono()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return nil, fmt.Errorf("kill %s's container (pid %d): %w", pod, pid, err)
		}
		return []Event{{Pod: pod, Ev: "exited", Mono: at}}, nil
	}
	switch fault.Kind {
	case chaos.ContainerKill:
		return kill()
	case chaos.KubeletStop:
		if err := c.SignalNode("kubelet", syscall.SIGSTOP); err != nil {
			return nil, err
		}
		k, kerr := kill()
		serr := sleepCtx(ctx, fault.Dur)
		if err := c.SignalNode("kubelet", syscall.SIGCONT); err != nil {
			return k, err
		}
		if kerr != nil {
			return k, kerr
		}
		return k, serr
	case chaos.Partition:
		heal, err := Partition(ctx, pid, addrs)
		if err != nil {
			return nil, err
		}
		serr := sleepCtx(ctx, fault.Dur)
		if err := heal(); err != nil {
			return nil, err
		}
		return nil, serr
	case chaos.PodDelete:
		return nil, f.cs.CoreV1().Pods(f.ns).Delete(ctx, pod, metav1.DeleteOptions{})
	}
	return nil, fmt.Errorf("%s is not a fault kind of the node", fault.Kind)
}

// targetPod returns the pod a fault applies to and its container's host
// PID: the holder of the Lease when the fault aims at the leader and the
// holder runs, else the Target'th running pod by name.
func targetPod(ctx context.Context, f *fleet, fault chaos.Fault) (string, int, error) {
	pods := RunningPods(ctx, f.cs, f.ns, f.selector)
	if len(pods) == 0 {
		return "", 0, fmt.Errorf("no running pod in %s", f.ns)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	p := pods[fault.Target%len(pods)]
	if fault.Leader {
		h := Holder(ctx, f.cs, f.ns, f.lease)
		for _, q := range pods {
			if q.Name == h {
				p = q
			}
		}
	}
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == "worker" && st.State.Running != nil {
			pid, err := ContainerPID(ctx, f.c, st.ContainerID)
			return p.Name, pid, err
		}
	}
	return "", 0, fmt.Errorf("pod %s's worker container does not run", p.Name)
}

// nodeTerms turns the workers' start and stop lines, and the kills of
// their containers (a SIGKILLed worker logs no "stop"), into terms: a term
// runs from a pod's "start" to its next "stop" (of the same shard, for the
// workers of `run --shards`) or to the kill of its container; one still
// open ends at now.
func nodeTerms(events, kills []Event, now int64) []candidate.Term {
	all := append(slices.Clone(events), kills...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].Mono < all[j].Mono })
	var rec candidate.Recorder
	for _, e := range all {
		ev := candidate.Event{Ev: e.Ev, ID: e.Pod, Impl: "leasehold", Mono: e.Mono, Token: e.Token}
		if n, err := strconv.Atoi(e.Shard); err == nil {
			ev.Shard = &n
		}
		rec.Add(ev)
	}
	return rec.Terms(now)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// nodeLine is one schedule's line of the table.
func nodeLine(r nodeResult) string {
	var kinds []string
	for _, k := range chaos.NodeKinds {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, r.injected[k]))
	}
	var fo []string
	for _, d := range r.failovers {
		fo = append(fo, ms(d))
	}
	return fmt.Sprintf("seed %d: %s; terms %d, overlaps %d, tokens back %d, max leaderless after faults %s, leader at end %v, failed faults %d, container-kill failovers [%s]",
		r.seed, strings.Join(kinds, " "), r.report.Terms, len(r.report.Overlaps), len(r.report.TokensBackwards),
		ms(r.report.MaxNoLeader), r.leaderAtEnd, len(r.failed), strings.Join(fo, " "))
}

// nodeTable is the markdown table of a run: faults applied by kind, terms,
// violations and the container-kill failover times.
func nodeTable(rs []nodeResult) string {
	injected := map[chaos.Kind]int{}
	var terms, overlaps, back, failed, noLeader int
	var fo []time.Duration
	for _, r := range rs {
		for k, v := range r.injected {
			injected[k] += v
		}
		terms += r.report.Terms
		overlaps += len(r.report.Overlaps)
		back += len(r.report.TokensBackwards)
		failed += len(r.failed)
		if !r.leaderAtEnd {
			noLeader++
		}
		fo = append(fo, r.failovers...)
	}
	slices.Sort(fo)
	var b strings.Builder
	var names []string
	for _, k := range chaos.NodeKinds {
		names = append(names, string(k))
	}
	fmt.Fprintf(&b, "| schedules | %s | failed faults | terms | overlaps | tokens back | no leader at end | container-kill failover p50 / p99 / max |\n", strings.Join(names, " | "))
	b.WriteString("|" + strings.Repeat("---|", len(chaos.NodeKinds)+7) + "\n")
	var counts []string
	for _, k := range chaos.NodeKinds {
		counts = append(counts, strconv.Itoa(injected[k]))
	}
	p50, p99, mx := "-", "-", "-"
	if len(fo) > 0 {
		p50, p99, mx = ms(pct(fo, 50)), ms(pct(fo, 99)), ms(fo[len(fo)-1])
	}
	fmt.Fprintf(&b, "| %d | %s | %d | %d | %d | %d | %d | %s / %s / %s |", len(rs), strings.Join(counts, " | "), failed, terms, overlaps, back, noLeader, p50, p99, mx)
	return b.String()
}

// TestNodeTermsEndAtKill: a killed container's term ends at the kill (its
// worker logs no "stop"), so a takeover after the kill is no overlap, and
// one before it is.
func TestNodeTermsEndAtKill(t *testing.T) {
	events := []Event{
		{Pod: "a", Ev: "start", Mono: 100, Token: "5"},
		{Pod: "b", Ev: "start", Mono: 300, Token: "7"},
		{Pod: "b", Ev: "stop", Mono: 400},
		{Pod: "a", Ev: "start", Mono: 500, Token: "9"}, // a's restarted container
	}
	check := func(kills []Event) chaos.Report {
		terms := nodeTerms(events, kills, 600)
		return chaos.Check(terms, nil, nil, 0, chaos.Window{From: 0, To: 600})
	}
	if r := check([]Event{{Pod: "a", Ev: "exited", Mono: 200}}); len(r.Violations()) != 0 || r.Terms != 3 {
		t.Errorf("kill at 200, b at 300: %d terms, violations %v; want 3 terms and none", r.Terms, r.Violations())
	}
	if r := check([]Event{{Pod: "a", Ev: "exited", Mono: 350}}); len(r.Overlaps) != 1 {
		t.Errorf("kill at 350, b at 300: overlaps %v, want one", r.Overlaps)
	}
	if r := check(nil); len(r.Overlaps) == 0 {
		t.Errorf("no kill: a's first term never ends, yet no overlap found")
	}
}
