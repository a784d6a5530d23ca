package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/shard"
)

// shardsHelp is appended to `run --help`.
const shardsHelp = `
With --shards K, run joins the shard group named by --lease instead of
campaigning for a Lease: K shards are spread over the live members (max −
min ≤ 1), and run starts one COMMAND per shard it owns, with
  LEASEHOLD_SHARD     the shard, 0..K-1
  LEASEHOLD_SHARDS    K
  LEASEHOLD_TOKEN     the shard's fencing token (grows with every owner)
  LEASEHOLD_GROUP     namespace/name of the group
  LEASEHOLD_IDENTITY  this member's identity
When a shard moves away its COMMAND gets SIGTERM, then SIGKILL after
--grace; the shard starts elsewhere only after it has exited. A COMMAND that
exits on its own leaves its shard owned and not restarted until it moves.
Signals act on every shard's COMMAND as on run's (see Signals above):
SIGUSR1, SIGUSR2 and SIGWINCH reach each; SIGTSTP stops each and then run;
on SIGCONT each continues if its shard is still this member's, and is
killed if the member's renew deadline passed while it was stopped.
--http then serves /shards (JSON: identity, members, owners, owned), a line
of it per change at /shards/watch, /healthz and /metrics
(leasehold_shard_*).`

// shardsView is the JSON served at /shards and /shards/watch.
type shardsView struct {
	Identity string `json:"identity"`
	Group    string `json:"group"`
	Shards   int    `json:"shards"`
	Member   bool   `json:"member"`
	// Members are the live members in this member's view.
	Members []string `json:"members"`
	// Owners is the owner of each shard in this member's view.
	Owners []string `json:"owners"`
	// Owned are the shards whose COMMAND runs here, with their tokens.
	Owned map[string]uint64 `json:"owned"`
}

func shardsViewOf(st shard.Status, group string, k int) shardsView {
	v := shardsView{Identity: st.Identity, Group: group, Shards: k, Member: st.Member, Members: st.Members, Owners: st.Owners, Owned: map[string]uint64{}}
	for s, t := range st.Owned {
		v.Owned[strconv.Itoa(s)] = uint64(t)
	}
	return v
}

// runShards runs COMMAND once per shard this member owns, until ctx ends.
func (r *runCmd) runShards(ctx context.Context, argv []string) error {
	if err := lookCommand(argv); err != nil {
		return err
	}
	// From here on, job-control and user signals are ours to relay, to the
	// COMMAND of every owned shard.
	sup := startSupervisor(r.io.Notify, r.io.Err)
	defer sup.close()
	ns, err := r.namespace()
	if err != nil {
		return asFailure(err)
	}
	cs, err := r.clientset()
	if err != nil {
		return asFailure(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	events, stopEvents := startEventRecorder(cs, ns)
	defer stopEvents()
	t := r.timing
	g, err := shard.New(shard.Config{
		Leases: cs.CoordinationV1(), Namespace: ns, Name: r.lease, Shards: r.shards, Identity: r.identity,
		LeaseDuration: t.LeaseDuration, RenewDeadline: t.RenewDeadline, RetryPeriod: t.RetryPeriod,
		Registerer: reg, Logger: r.logger(), Recorder: events,
	})
	if err != nil {
		return withCode(ExitUsage, err)
	}
	ref := ns + "/" + r.lease
	changes := &changeSignal{}
	if r.http != "" {
		srv, err := serveHTTP(r.http, shardsHandler(g, ref, r.shards, reg, changes))
		if err != nil {
			return withCode(ExitError, err)
		}
		fmt.Fprintf(r.io.Err, "leasehold: serving HTTP on %s\n", srv.Addr())
		defer func() { _ = srv.Close() }()
	}
	var mu sync.Mutex // children write to the shared streams
	err = g.Run(ctx, func(sctx context.Context, s int, tok lease.Token) error {
		mu.Lock()
		fmt.Fprintf(r.io.Err, "leasehold: owning shard %d of group %s (token %s); starting %s\n", s, ref, tok, argv[0])
		mu.Unlock()
		c, err := sup.start(childSpec{argv: argv, io: r.io.child(), env: []string{
			"LEASEHOLD_SHARD=" + strconv.Itoa(s),
			"LEASEHOLD_SHARDS=" + strconv.Itoa(r.shards),
			"LEASEHOLD_TOKEN=" + tok.String(),
			"LEASEHOLD_GROUP=" + ref,
			"LEASEHOLD_IDENTITY=" + g.Identity(),
		}}, fmt.Sprintf("%s of shard %d", argv[0], s), func() bool { return shard.Check(sctx) == nil })
		changes.notify()
		defer changes.notify()
		if err != nil {
			return err
		}
		// (start's holds: COMMAND may run only while the shard's run holds: its context
		// has not ended and the member's renew deadline has not passed (a
		// stopped process sees the deadline pass before its timer fires).)
		defer sup.detach(c)
		select {
		case <-c.Done():
			if !sup.killedOnResume(c) {
				mu.Lock()
				fmt.Fprintf(r.io.Err, "leasehold: %s of shard %d exited with status %d\n", argv[0], s, c.Code())
				mu.Unlock()
				return nil
			}
			<-sctx.Done() // killed because the run ended: its context follows
		case <-sctx.Done():
		}
		code := c.Stop(r.grace)
		mu.Lock()
		fmt.Fprintf(r.io.Err, "leasehold: shard %d ended (%v); %s stopped with status %d\n", s, context.Cause(sctx), argv[0], code)
		mu.Unlock()
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		return withCode(ExitError, apiMessage(err))
	}
	return nil
}

// changeSignal wakes /shards/watch streams when a shard starts or stops.
type changeSignal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (c *changeSignal) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

func (c *changeSignal) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch != nil {
		close(c.ch)
	}
	c.ch = make(chan struct{})
}

func shardsHandler(g *shard.Group, group string, k int, gatherer prometheus.Gatherer, changes *changeSignal) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /shards", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(shardsViewOf(g.Status(), group, k))
	})
	mux.HandleFunc("GET /shards/watch", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		flusher, _ := w.(http.Flusher)
		var last shardsView
		for first := true; ; first = false {
			changed := changes.wait()
			v := shardsViewOf(g.Status(), group, k)
			if first || !sameView(last, v) {
				if err := json.NewEncoder(w).Encode(v); err != nil {
					return
				}
				if flusher != nil {
					flusher.Flush()
				}
				last = v
			}
			select {
			case <-r.Context().Done():
				return
			case <-changed:
			}
		}
	})
	health := func(w http.ResponseWriter, r *http.Request) {
		if err := g.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	}
	mux.HandleFunc("GET /healthz", health)
	mux.HandleFunc("GET /livez", health)
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return mux
}

func sameView(a, b shardsView) bool {
	if a.Member != b.Member || !slices.Equal(a.Members, b.Members) || !slices.Equal(a.Owners, b.Owners) || len(a.Owned) != len(b.Owned) {
		return false
	}
	for s, t := range a.Owned {
		if b.Owned[s] != t {
			return false
		}
	}
	return true
}
