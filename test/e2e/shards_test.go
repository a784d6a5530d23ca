//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/internal/chaos"
)

// shardCount is deploy/sharded's --shards.
const shardCount = 16

// servedBy returns, from the workers' lines, which pod's worker serves each
// shard at the end of events (a shard whose last line is a "stop" is not
// served), and the pods killed after their last start (kills).
func servedBy(events, kills []Event) map[string]string {
	all := append(slices.Clone(events), kills...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].Mono < all[j].Mono })
	owner := map[string]string{}
	for _, e := range all {
		switch {
		case e.Ev == "start":
			owner[e.Shard] = e.Pod
		case e.Ev == "stop" && owner[e.Shard] == e.Pod:
			delete(owner, e.Shard)
		case e.Ev == "exited":
			for s, p := range owner {
				if p == e.Pod {
					delete(owner, s)
				}
			}
		}
	}
	return owner
}

// balanced waits until every shard is served, by exactly the running pods,
// each serving ⌊K/N⌋ or ⌈K/N⌉ shards, and returns the assignment.
func (f *fleet) balanced(ctx context.Context, t *testing.T, kills []Event) map[string]string {
	t.Helper()
	var owner map[string]string
	err := Eventually(ctx, 3*time.Minute, func() (bool, string) {
		owner = servedBy(f.rec.Events(), kills)
		pods := RunningPods(ctx, f.cs, f.ns, f.selector)
		count := map[string]int{}
		for _, p := range pods {
			count[p.Name] = 0
		}
		for _, p := range owner {
			if _, ok := count[p]; !ok {
				return false, fmt.Sprintf("a shard is served by %s, not a running pod", p)
			}
			count[p]++
		}
		if len(owner) != shardCount || len(pods) != f.replicas {
			return false, fmt.Sprintf("%d of %d shards served, %d of %d pods running", len(owner), shardCount, len(pods), f.replicas)
		}
		lo, hi := shardCount/len(pods), (shardCount+len(pods)-1)/len(pods)
		for p, n := range count {
			if n < lo || n > hi {
				return false, fmt.Sprintf("%s serves %d shards, want %d..%d (%v)", p, n, lo, hi, count)
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return owner
}

// moved counts the shards whose pod differs between two assignments.
func moved(before, after map[string]string) int {
	n := 0
	for s, p := range after {
		if before[s] != p {
			n++
		}
	}
	return n
}

// TestShardsOnNode: deploy/sharded (16 shards, 3 replicas) on the node. The
// shards are spread max − min ≤ 1; `kubectl scale` to 4 moves at most
// ⌈16/4⌉ shards, and back to 3 spreads them again; SIGKILLing a pod's
// container and deleting a pod move their shards, and every shard is
// served again; and no shard is ever served by two pods at
// once (the workers' lines, checked per shard), tokens growing per shard.
func TestShardsOnNode(t *testing.T) {
	c := node(t)
	ctx := t.Context()
	f := leaseholdFleet(t, c, "e2e-shards", "sharded", "")
	var kills []Event
	start := f.balanced(ctx, t, kills)
	t.Logf("3 replicas: %v", counts(start))

	f.replicas = 4
	if err := Kubectl(ctx, c, "-n", f.ns, "scale", "deployment/worker", "--replicas=4"); err != nil {
		t.Fatal(err)
	}
	scaled := f.balanced(ctx, t, kills)
	if m := moved(start, scaled); m > (shardCount+3)/4 {
		t.Errorf("scaling 3 → 4 moved %d shards, want at most %d", m, (shardCount+3)/4)
	} else {
		t.Logf("4 replicas: %v; %d shards moved", counts(scaled), m)
	}

	f.replicas = 3
	if err := Kubectl(ctx, c, "-n", f.ns, "scale", "deployment/worker", "--replicas=3"); err != nil {
		t.Fatal(err)
	}
	left := f.balanced(ctx, t, kills)
	t.Logf("3 replicas again: %v; %d shards moved", counts(left), moved(scaled, left))

	pod, pid, err := targetPod(ctx, f, chaos.Fault{Target: 0})
	if err != nil {
		t.Fatal(err)
	}
	t0 := Mono()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	kills = append(kills, Event{Pod: pod, Ev: "exited", Mono: t0})
	after := f.balanced(ctx, t, kills)
	t.Logf("after %s's container was killed: %v", pod, counts(after))

	if err := f.cs.CoreV1().Pods(f.ns).Delete(ctx, slices.Sorted(maps.Keys(counts(after)))[0], metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	end := f.balanced(ctx, t, kills)
	t.Logf("after a pod deletion: %v", counts(end))

	terms := nodeTerms(f.rec.Events(), kills, Mono())
	r := chaos.CheckRun(terms, nil, nil, 0, chaos.Window{}, chaos.Window{})
	for _, v := range r.Violations() {
		t.Error(v)
	}
	if r.Terms < shardCount {
		t.Errorf("%d shard terms recorded, want at least %d", r.Terms, shardCount)
	}
}

// counts returns how many shards each pod serves.
func counts(owner map[string]string) map[string]int {
	c := map[string]int{}
	for _, p := range owner {
		c[p]++
	}
	return c
}
