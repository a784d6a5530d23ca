package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/leasehold/leasehold/internal/testenv"
)

func init() { log.SetLogger(zap.New(zap.UseDevMode(false), zap.Level(zapcore.ErrorLevel))) }

// TestOneManagerLeadsAndFailsOver: three managers campaign; one leads and its
// controller stamps ConfigMaps; the leader crashes (no release) and another
// takes over after the lease expires, with a higher fencing token.
func TestOneManagerLeadsAndFailsOver(t *testing.T) {
	cp := testenv.Start(t)
	cfg := cp.Config()
	cs := testenv.Clientset(t, cp)
	var wg sync.WaitGroup
	defer wg.Wait()
	cancels := map[string]context.CancelFunc{}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("manager-%d", i)
		ctx, cancel := context.WithCancel(t.Context())
		cancels[id] = cancel
		defer cancel()
		wg.Go(func() {
			err := Run(ctx, cfg, Options{Namespace: "default", Lease: "cr-example", Identity: id,
				LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond})
			if err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", id, err)
			}
		})
	}

	leader, tok1 := stampOf(t, cs, "cm-1")
	if holder := holderOf(t, cs); holder != leader {
		t.Fatalf("cm-1 stamped by %s but the Lease is held by %s", leader, holder)
	}
	// Only the leader's controller runs: a second ConfigMap gets the same stamp.
	if again, tok := stampOf(t, cs, "cm-2"); again != leader || tok != tok1 {
		t.Fatalf("cm-2 stamped by %s/%d, want %s/%d", again, tok, leader, tok1)
	}

	cancels[leader]() // crash: ReleaseOnCancel is false, the lease must expire
	crashed := time.Now()
	next, tok2 := stampOf(t, cs, "cm-3")
	if next == leader {
		t.Fatalf("cm-3 stamped by the crashed leader %s", leader)
	}
	if tok2 <= tok1 {
		t.Fatalf("token after failover %d is not above %d", tok2, tok1)
	}
	t.Logf("%s led with token %d; after its crash %s took over (cm-3 stamped %v later) with token %d",
		leader, tok1, next, time.Since(crashed).Round(time.Millisecond), tok2)
}

// stampOf creates a labelled ConfigMap and waits for the leader's controller
// to stamp it; it returns the identity and token of the stamp.
func stampOf(t *testing.T, cs kubernetes.Interface, name string) (string, uint64) {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name,
		Labels: map[string]string{"example.leasehold.io/stamp": "true"}}}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got, err := cs.CoreV1().ConfigMaps("default").Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s := got.Annotations[Annotation]; s != "" {
			id, tok, _ := strings.Cut(s, "/")
			n, err := strconv.ParseUint(tok, 10, 64)
			if err != nil {
				t.Fatalf("stamp %q: %v", s, err)
			}
			return id, n
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s was not reconciled within 30s", name)
	return "", 0
}

func holderOf(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	l, err := cs.CoordinationV1().Leases("default").Get(t.Context(), "cr-example", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *l.Spec.HolderIdentity
}
