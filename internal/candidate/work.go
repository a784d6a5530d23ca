package candidate

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The query parameters of a write to a fenced resource (--write-url): the
// writer's identity, its fencing token (absent for client-go, which has
// none) and CLOCK_MONOTONIC when the write was decided.
const (
	WriteID    = "id"
	WriteFence = "fence"
	WriteSent  = "sent"
	// WriteShard names the shard a shards member writes for; each shard is
	// a fenced resource of its own.
	WriteShard = "shard"
)

// worker is what a candidate does while it leads: it logs the term and
// writes to the fenced resource, checking its leadership context before each
// write the way an application checks it before acting.
type worker struct {
	o    options
	cs   kubernetes.Interface
	out  *emitter
	http *http.Client
}

func newWorker(o options, cs kubernetes.Interface, out *emitter) *worker {
	return &worker{o: o, cs: cs, out: out, http: &http.Client{Timeout: 2 * time.Second}}
}

// term runs one leadership term: tctx is the leadership context, ctx the
// process's. token is the term's fencing token (Leasehold) or label
// (client-go).
func (w *worker) term(ctx, tctx context.Context, token string) {
	w.out.emit(Event{Ev: "start", Token: token})
	fence := ""
	if w.o.impl != "client-go" {
		fence = token
	}
	for tctx.Err() == nil {
		w.write(fence)
		wait(tctx, w.o.writeEvery)
	}
	cause := fmt.Sprint(context.Cause(tctx))
	if w.o.unsafeNoDeadline && ctx.Err() == nil {
		w.untilSuperseded(ctx, fence)
		cause += "; kept working until another holder was seen"
	}
	w.out.emit(Event{Ev: "stop", Cause: cause})
}

// shardTerm runs one shard of a shards member: like term, with the shard
// in its events and writes.
func (w *worker) shardTerm(ctx, sctx context.Context, s int, token string) {
	w.out.emit(Event{Ev: "start", Token: token, Shard: &s})
	for sctx.Err() == nil {
		w.writeShard(token, strconv.Itoa(s))
		wait(sctx, w.o.writeEvery)
	}
	w.out.emit(Event{Ev: "stop", Cause: fmt.Sprint(context.Cause(sctx)), Shard: &s})
}

// untilSuperseded is the control for the hard deadline: a leader that, once
// its term's context ended, goes on working until it reads the Lease and
// finds another holder (or the process is stopped). Reads that fail (a
// partition) leave it working.
func (w *worker) untilSuperseded(ctx context.Context, fence string) {
	var other atomic.Bool
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		for {
			rctx, rcancel := context.WithTimeout(pctx, w.o.rp)
			l, err := w.cs.CoordinationV1().Leases(w.o.namespace).Get(rctx, w.o.name, metav1.GetOptions{})
			rcancel()
			if err == nil && (l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != w.o.id) {
				other.Store(true)
				return
			}
			if !wait(pctx, w.o.rp) {
				return
			}
		}
	})
	for !other.Load() && ctx.Err() == nil {
		w.write(fence)
		if !wait(ctx, w.o.writeEvery) {
			return
		}
	}
}

// write sends one write; the resource's answer does not matter to the
// candidate (the harness reads the resource's log).
func (w *worker) write(fence string) { w.writeShard(fence, "") }

func (w *worker) writeShard(fence, shard string) {
	if w.o.writeURL == "" {
		return
	}
	q := url.Values{WriteID: {w.o.id}, WriteSent: {strconv.FormatInt(Mono(), 10)}}
	if shard != "" {
		q.Set(WriteShard, shard)
	}
	if fence != "" {
		q.Set(WriteFence, fence)
	}
	resp, err := w.http.Post(w.o.writeURL+"?"+q.Encode(), "text/plain", nil)
	if err == nil {
		_ = resp.Body.Close()
	}
}

// wait waits d or until ctx ends; it reports whether d passed.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
