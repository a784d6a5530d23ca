package shard_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/shard"
)

// realFleet runs members on a real apiserver.
type realFleet struct {
	t      *testing.T
	leases coordinationv1client.LeasesGetter
	k      int
	log    *runLog
	wg     sync.WaitGroup
	mu     sync.Mutex
	cancel map[string]context.CancelFunc
	errs   map[string]error
}

func (f *realFleet) start(id string, leases coordinationv1client.LeasesGetter, reg prometheus.Registerer) *shard.Group {
	f.t.Helper()
	g, err := shard.New(shard.Config{
		Leases: leases, Namespace: ns, Name: group, Shards: f.k, Identity: id,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
		Registerer: reg,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.mu.Lock()
	f.cancel[id] = cancel
	f.mu.Unlock()
	f.wg.Go(func() {
		err := g.Run(ctx, f.log.fn(id))
		f.mu.Lock()
		f.errs[id] = err
		f.mu.Unlock()
	})
	return g
}

func (f *realFleet) stop(id string) {
	f.mu.Lock()
	c := f.cancel[id]
	delete(f.cancel, id)
	f.mu.Unlock()
	if c != nil {
		c()
	}
}

func (f *realFleet) stopAll() {
	f.mu.Lock()
	for _, c := range f.cancel {
		c()
	}
	f.cancel = map[string]context.CancelFunc{}
	f.mu.Unlock()
	f.wg.Wait()
}

// settle waits (real time, bounded) until every shard is run by exactly one
// of want members with max−min ≤ 1.
func (f *realFleet) settle(want int, within time.Duration) map[string]int {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, ok := map[string]int{}, true
		for _, o := range f.log.owners(f.k) {
			if o == "" || o == "!" {
				ok = false
				break
			}
			c[o]++
		}
		if ok && len(c) == want && imbalance(c) <= 1 {
			return c
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("not settled on %d members within %v: %v (owners %v)", want, within, c, f.log.owners(f.k))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIntegrationShards: members on a real kube-apiserver with only the
// verbs the deploy Role grants (get, watch, create, update: no list) split
// the shards evenly; a join and a leave move few shards; a member cut off
// from the API loses its shards to the others after its record expires;
// no shard is ever run twice and tokens grow.
func TestIntegrationShards(t *testing.T) {
	cp := testenv.Start(t)
	ctx := t.Context()
	rules := []rbacv1.PolicyRule{{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "watch", "create", "update"}}}
	token, err := cp.ServiceAccountToken(ctx, ns, "shards", rules)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cp.ConfigForToken(token))
	if err != nil {
		t.Fatal(err)
	}
	const k = 32
	f := &realFleet{t: t, leases: cs.CoordinationV1(), k: k, log: &runLog{}, cancel: map[string]context.CancelFunc{}, errs: map[string]error{}}
	defer f.stopAll()
	regs := map[string]*prometheus.Registry{}
	cut := &cutLeases{srv: cs.CoordinationV1()}
	for _, id := range []string{"m0", "m1", "m2"} {
		regs[id] = prometheus.NewRegistry()
		leases := coordinationv1client.LeasesGetter(cs.CoordinationV1())
		if id == "m0" {
			leases = cut
		}
		f.start(id, leases, regs[id])
	}
	c := f.settle(3, 20*time.Second)
	t.Logf("3 members: %v", c)
	before := f.log.owners(k)

	f.start("m3", cs.CoordinationV1(), nil)
	c = f.settle(4, 10*time.Second)
	after := f.log.owners(k)
	if n := moved(before, after); n > (k+3)/4 {
		t.Errorf("join moved %d shards, want at most %d", n, (k+3)/4)
	}
	t.Logf("after the join: %v, %d moved", c, moved(before, after))

	f.stop("m3")
	c = f.settle(3, 10*time.Second)
	t.Logf("after the leave: %v", c)

	cutAt := time.Now()
	cut.cut.Store(true)
	c = f.settle(2, 15*time.Second)
	t.Logf("after m0 was cut off: %v, %v later", c, time.Since(cutAt))
	if time.Since(cutAt) < 2*time.Second {
		t.Errorf("m0's shards moved %v after it was cut off, before its record could expire", time.Since(cutAt))
	}
	cut.cut.Store(false)
	c = f.settle(3, 20*time.Second)
	t.Logf("m0 back: %v", c)

	// Metrics follow.
	mfs, err := regs["m1"].Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{"leasehold_shard_owned", "leasehold_shard_members", "leasehold_shard_moves_total", "leasehold_shard_time_to_serve_seconds", "leasehold_shard_writes_total"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("metric %s missing from %v", want, names)
		}
	}
	ls, err := testenv.Clientset(t, cp).CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: shard.GroupLabel + "=" + group})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.Items) != 4 {
		t.Errorf("%d membership Leases, want 4 (one per member ever started)", len(ls.Items))
	}
	f.stopAll()
	f.log.check(t)
	for id, err := range f.errs {
		if err != nil && err != context.Canceled {
			t.Errorf("%s: Run returned %v", id, err)
		}
	}
}
