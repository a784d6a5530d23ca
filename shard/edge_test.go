package shard_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/shard"
)

// TestSteadyStateWrites: in steady state each member writes once per
// RetryPeriod whatever K is, and nobody reads.
func TestSteadyStateWrites(t *testing.T) {
	for _, k := range []int{4, 1024} {
		t.Run("", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFleet(t, k, nil)
				for _, id := range ids(3) {
					f.start(id)
				}
				time.Sleep(5 * time.Second)
				synctest.Wait()
				u0, g0 := f.srv.Count("update"), f.srv.Count("get")
				time.Sleep(10 * time.Second) // 20 renew periods
				synctest.Wait()
				updates, gets := f.srv.Count("update")-u0, f.srv.Count("get")-g0
				if limit := 3 * 20; updates > limit {
					t.Errorf("K=%d: %d writes in 20 renew periods by 3 members, want at most %d", k, updates, limit)
				}
				if gets != 0 {
					t.Errorf("K=%d: %d reads in steady state, want 0", k, gets)
				}
				if w := f.srv.Count("watch"); w != 3 {
					t.Errorf("K=%d: %d watches opened, want one per member (3)", k, w)
				}
			})
		})
	}
}

// TestHandEditIsIgnored: a membership Lease edited by hand (kubectl edit
// that drops its claims and its holder) is not trusted: its owner notices, stops everything and
// joins again, and nobody else starts its shards before that.
func TestHandEditIsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 16
		f := newFleet(t, k, nil)
		for _, id := range ids(2) {
			f.start(id)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		l := f.srv.Lease(ns, group+"-m0")
		v := l.Annotations[shard.MemberAnnotation]
		body, _, _ := strings.Cut(v, ";sum=")
		l.Annotations[shard.MemberAnnotation] = body[:strings.Index(body, ";c=")] + ";c=;sum=forged" // drops every claim
		empty := ""
		l.Spec.HolderIdentity = &empty // and says m0 left
		f.srv.Put(l)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if c := f.counts(t); len(c) != 2 || imbalance(c) > 1 {
			t.Errorf("after the edit: counts %v", c)
		}
		f.stopAll()
		f.log.check(t)
	})
}

// TestDeletedMemberLease: a membership Lease deleted by hand keeps its
// claims in the others' view until it expires; its owner joins again.
func TestDeletedMemberLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 16
		f := newFleet(t, k, nil)
		for _, id := range ids(3) {
			f.start(id)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		f.srv.Delete(ns, group+"-m1")
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if c := f.counts(t); len(c) != 3 || imbalance(c) > 1 {
			t.Errorf("after the delete: counts %v", c)
		}
		f.stopAll()
		f.log.check(t)
	})
}

// TestWorkErrorAndPanic: an error returned by fn while its shard is owned
// ends Run with it after every shard stopped and the member left; a panic
// is re-raised on Run's goroutine after the same.
func TestWorkErrorAndPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleet(t, 8, nil)
		f.start("other")
		boom := errors.New("boom")
		g, err := shard.New(config(f.srv, 8, "failing"))
		if err != nil {
			t.Fatal(err)
		}
		err = g.Run(t.Context(), func(ctx context.Context, s int, _ lease.Token) error {
			if s%2 == 0 {
				return boom
			}
			<-ctx.Done()
			return nil
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want the work's error", err)
		}
		if got := f.srv.Lease(ns, group+"-failing").Spec.HolderIdentity; got == nil || *got != "" {
			t.Errorf("after the error the member Lease names %v, want released", got)
		}
		var recovered any
		func() {
			defer func() { recovered = recover() }()
			_ = g.Run(t.Context(), func(ctx context.Context, s int, _ lease.Token) error {
				panic("bad shard")
			})
		}()
		if recovered != "bad shard" {
			t.Fatalf("recovered %v, want the panic of the work", recovered)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if c := f.counts(t); c["other"] != 8 {
			t.Errorf("counts %v, want every shard on the remaining member", c)
		}
	})
}

// TestShardCountMismatch: a member with another K refuses to join.
func TestShardCountMismatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleet(t, 8, nil)
		f.start("a")
		time.Sleep(time.Second)
		g, err := shard.New(config(f.srv, 16, "b"))
		if err != nil {
			t.Fatal(err)
		}
		err = g.Run(t.Context(), func(context.Context, int, lease.Token) error { return nil })
		if !errors.Is(err, shard.ErrShardCount) || !strings.Contains(err.Error(), "uses 8 shards, this member 16") {
			t.Fatalf("Run = %v, want ErrShardCount naming both counts", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	err := shard.Config{Namespace: "Bad_NS", Name: "UPPER", Shards: 0, Identity: "x", LeaseDuration: 1500 * time.Millisecond}.Validate()
	for _, want := range []string{"Leases is required", "Namespace \"Bad_NS\"", "Name \"UPPER\"", "Shards 0 must be between 1 and", "LeaseDuration 1.5s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

// skewClock is the real clock, whose Now can be moved ahead without
// firing any timer: what a process sees when it is continued after a
// stop, before its timers have run.
type skewClock struct {
	clock.RealClock
	skew atomic.Int64
}

func (c *skewClock) Now() time.Time { return time.Now().Add(time.Duration(c.skew.Load())) }

func (c *skewClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// TestCheck: Check says a shard's run holds while its context is valid and
// the member's hard deadline has not passed by the clock, even before the
// timer that ends the context has fired.
func TestCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clk := &skewClock{}
		f := newFleet(t, 1, nil)
		ctxs := make(chan context.Context, 1)
		cfg := config(f.srv, 1, "m0")
		cfg.Clock = clk
		g, err := shard.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() {
			done <- g.Run(ctx, func(ctx context.Context, _ int, _ lease.Token) error {
				ctxs <- ctx
				<-ctx.Done()
				return nil
			})
		}()
		sctx := <-ctxs
		if err := shard.Check(sctx); err != nil {
			t.Errorf("Check of a running shard: %v, want nil", err)
		}
		if err := shard.Check(t.Context()); err == nil {
			t.Error("Check of a context that is no shard's: nil, want an error")
		}
		clk.skew.Store(int64(3 * time.Second)) // past RenewDeadline (2s); no timer fired
		if err := shard.Check(sctx); !errors.Is(err, shard.ErrDeadline) || sctx.Err() != nil {
			t.Errorf("Check after the deadline passed by the clock: %v (context %v), want ErrDeadline while the context is still valid", err, sctx.Err())
		}
		clk.skew.Store(0)
		cancel()
		<-done
		if err := shard.Check(sctx); err == nil {
			t.Error("Check after the shard stopped: nil, want its cause")
		}
	})
}
