package election_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/internal/testenv"
)

// TestIntegrationHandoffEventsMetrics: three electors on a real apiserver;
// the leader hands off to a chosen candidate, which takes over; Events are
// recorded on the Lease and the metrics follow.
func TestIntegrationHandoffEventsMetrics(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	leading := make(chan string, 10)
	els := map[string]*election.Elector{}
	regs := map[string]*prometheus.Registry{}
	for _, id := range []string{"a", "b", "c"} {
		regs[id] = prometheus.NewRegistry()
		e, err := election.New(election.Config{
			Leases: cs.CoordinationV1(), Namespace: "default", Name: "handoff", Identity: id,
			LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second,
			Logger:     testr.NewWithOptions(t, testr.Options{Verbosity: 1}),
			Registerer: regs[id],
			Recorder:   broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "leasehold-test", Host: id}),
		})
		if err != nil {
			t.Fatal(err)
		}
		els[id] = e
		wg.Go(func() {
			_ = e.Run(ctx, func(ctx context.Context) error {
				leading <- id
				<-ctx.Done()
				return nil
			})
		})
	}
	first := <-leading
	to := "c"
	if first == "c" {
		to = "b"
	}
	if got := gauge(t, regs[first], "leasehold_election_is_leader"); got != 1 {
		t.Fatalf("is_leader of %s = %v, want 1", first, got)
	}
	hctx, hcancel := context.WithTimeout(ctx, 20*time.Second)
	defer hcancel()
	if err := els[first].Handoff(hctx, to); err != nil {
		t.Fatalf("Handoff: %v", err)
	}
	select {
	case got := <-leading:
		if got != to {
			t.Fatalf("%s took over, want %s", got, to)
		}
	case <-hctx.Done():
		t.Fatal("the target did not take over")
	}
	l, _ := els[first].Observe()
	if l.IsMe || l.Holder != to {
		t.Fatalf("old leader observes %+v, want %s leading", l, to)
	}
	if got := gauge(t, regs[first], "leasehold_election_is_leader"); got != 0 {
		t.Fatalf("is_leader of %s after handoff = %v, want 0", first, got)
	}

	// Events land on the Lease.
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Lease,involvedObject.name=handoff"})
		if err != nil {
			t.Fatal(err)
		}
		var msgs []string
		for _, ev := range evs.Items {
			msgs = append(msgs, ev.Message)
		}
		all := strings.Join(msgs, "; ")
		if strings.Contains(all, first+" became leader") && strings.Contains(all, first+" stopped leading") && strings.Contains(all, to+" became leader") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events on the Lease: %s", all)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
