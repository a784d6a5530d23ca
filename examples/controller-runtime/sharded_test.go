package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/internal/testenv"
)

// TestShardedManagers: three managers split 8 shards; every labelled
// ConfigMap is stamped by the replica owning its shard (all objects of a
// shard by one replica); when a replica
// leaves, its shards' objects are stamped again by their new owners, with
// higher tokens.
func TestShardedManagers(t *testing.T) {
	cp := testenv.Start(t)
	cfg := cp.Config()
	cs := testenv.Clientset(t, cp)
	const k, ns = 8, "default"
	var wg sync.WaitGroup
	defer wg.Wait()
	cancels := map[string]context.CancelFunc{}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("replica-%d", i)
		ctx, cancel := context.WithCancel(t.Context())
		cancels[id] = cancel
		defer cancel()
		wg.Go(func() {
			err := RunSharded(ctx, cfg, ShardedOptions{Namespace: ns, Group: "cr-sharded", Identity: id, Shards: k,
				LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond})
			if err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", id, err)
			}
		})
	}
	var names []string
	for i := range 16 {
		name := fmt.Sprintf("sharded-%d", i)
		names = append(names, name)
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"example.leasehold.io/stamp": "true"}}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	type stamp struct {
		id    string
		shard int
		token uint64
	}
	// stamps waits until every ConfigMap is stamped by a replica in want.
	stamps := func(want map[string]bool) map[string]stamp {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, done := map[string]stamp{}, true
			for _, name := range names {
				cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				f := strings.Split(cm.Annotations[Annotation], "/")
				if len(f) != 3 || !want[f[0]] {
					done = false
					break
				}
				s, _ := strconv.Atoi(f[1])
				tok, _ := strconv.ParseUint(f[2], 10, 64)
				if s != ShardOf(ns, name, k) {
					t.Fatalf("%s stamped for shard %d, its shard is %d", name, s, ShardOf(ns, name, k))
				}
				out[name] = stamp{f[0], s, tok}
			}
			owner := map[int]string{}
			for _, s := range out {
				if o, ok := owner[s.shard]; ok && o != s.id {
					done = false // a shard moved and its objects are being stamped again
				}
				owner[s.shard] = s.id
			}
			if done {
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("not every ConfigMap stamped by %v within 30s", want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	before := stamps(map[string]bool{"replica-1": true, "replica-2": true, "replica-3": true})
	cancels["replica-1"]() // leaves the group; its shards move
	after := stamps(map[string]bool{"replica-2": true, "replica-3": true})
	for name, s := range after {
		if b := before[name]; b.id == "replica-1" && s.token <= b.token {
			t.Errorf("%s: token %d after the move is not above %d", name, s.token, b.token)
		}
	}
}
