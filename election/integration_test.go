package election_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/lease"
)

func TestIntegrationHandoff(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	leading := make(chan string, 10)
	els := map[string]*election.Elector{}
	for _, id := range []string{"a", "b", "c"} {
		e, err := election.New(election.Config{
			Leases: cs.CoordinationV1(), Namespace: "default", Name: "handoff", Identity: id,
			LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second,
			Logger: testr.NewWithOptions(t, testr.Options{Verbosity: 2}),
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
	c, _ := lease.NewClient(cs.CoordinationV1(), "default", "handoff")
	if _, err := election.RequestHandoff(ctx, c, to); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-leading:
		if got != to {
			t.Fatalf("%s took over, want %s", got, to)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no handoff")
	}
	cancel()
}
