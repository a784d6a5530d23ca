package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/leasehold/leasehold/internal/candidate"
)

// loadResult is the JSON line of the load benchmark. Rates are per second
// over the window; "rps" counts every request except watch opens, which are
// counted separately (per candidate, not per second). Follower values are
// the mean over the followers.
type loadResult struct {
	Bench              string  `json:"bench"`
	Impl               string  `json:"impl"`
	WindowS            float64 `json:"window_s"`
	Followers          int     `json:"followers"`
	LeaderRPS          float64 `json:"leader_rps"`
	LeaderWatchOpens   float64 `json:"leader_watch_opens"`
	FollowerRPS        float64 `json:"follower_rps"`
	FollowerWatchOpens float64 `json:"follower_watch_opens"`
	// LeaderChanges counts leadership changes during the window, which make
	// the split between leader and followers meaningless (0 is expected).
	LeaderChanges int `json:"leader_changes,omitempty"`
}

// load measures the API requests of a steady group: one leader and two
// followers per implementation, all implementations at once (each on its own
// Lease). After a settling period every candidate reports its request counts
// (SIGUSR1), again after the window, and the difference is the load.
func (b *bench) load(ctx context.Context) ([]any, error) {
	g := b.newGroup()
	defer g.close()
	members := map[string][]string{}
	var all []string
	for _, impl := range b.o.impls {
		name := "bench-load-" + impl
		members[impl] = ids(impl, 3)
		all = append(all, members[impl]...)
		for _, id := range members[impl] {
			if err := g.start(id, b.candidate(impl, name)); err != nil {
				return nil, err
			}
		}
	}
	b.logf("load: 3 candidates each of %s, window %v", strings.Join(b.o.impls, ", "), b.o.loadWindow)
	leaders := map[string]string{}
	for _, impl := range b.o.impls {
		leader, err := g.awaitLeader(ctx, members[impl])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", impl, err)
		}
		leaders[impl] = leader
	}
	if err := g.waitUntil(ctx, "ready from every candidate", func() bool {
		return !slices.ContainsFunc(all, func(id string) bool { return !g.ready[id] })
	}); err != nil {
		return nil, err
	}
	settle := 2*b.o.timing.RetryPeriod + time.Second
	b.logf("load: leaders %v; settling for %v", leaders, settle)
	if err := g.sleep(ctx, settle); err != nil {
		return nil, err
	}
	startsBefore := map[string]int{}
	for _, id := range all {
		startsBefore[id] = g.starts[id]
	}
	first, err := g.snapshotRequests(ctx, all)
	if err != nil {
		return nil, err
	}
	b.logf("load: measuring for %v", b.o.loadWindow)
	if err := g.sleep(ctx, b.o.loadWindow); err != nil {
		return nil, err
	}
	second, err := g.snapshotRequests(ctx, all)
	if err != nil {
		return nil, err
	}

	var results []any
	for _, impl := range b.o.impls {
		r := loadResult{Bench: "load", Impl: impl}
		for _, id := range members[impl] {
			r.LeaderChanges += g.starts[id] - startsBefore[id]
		}
		if leader := g.leaderOf(members[impl]); leader != leaders[impl] {
			r.LeaderChanges++
		}
		if r.LeaderChanges > 0 {
			b.logf("load %s: WARNING: leadership changed %d times during the window", impl, r.LeaderChanges)
		}
		var window time.Duration
		for _, id := range members[impl] {
			d := requestDelta(first[id], second[id])
			dt := time.Duration(second[id].Mono - first[id].Mono)
			window += dt
			rps := float64(d.nonWatch()) / dt.Seconds()
			role := "follower"
			if id == leaders[impl] {
				role = "leader"
				r.LeaderRPS, r.LeaderWatchOpens = rps, float64(d["watch"])
			} else {
				r.Followers++
				r.FollowerRPS += rps
				r.FollowerWatchOpens += float64(d["watch"])
			}
			b.logf("load %s: %s (%s) over %v: %v", impl, id, role, dt.Round(time.Millisecond), d)
		}
		r.WindowS = round3(window.Seconds() / float64(len(members[impl])))
		r.LeaderRPS, r.LeaderWatchOpens = round3(r.LeaderRPS), round3(r.LeaderWatchOpens)
		if r.Followers > 0 {
			r.FollowerRPS = round3(r.FollowerRPS / float64(r.Followers))
			r.FollowerWatchOpens = round3(r.FollowerWatchOpens / float64(r.Followers))
		}
		results = append(results, r)
	}
	return results, nil
}

// counts are requests by kind: get, create, update, watch, other.
type counts map[string]int64

func (c counts) nonWatch() int64 { return c["get"] + c["create"] + c["update"] + c["other"] }

func requestDelta(a, b candidate.Event) counts {
	d := counts{}
	for k, v := range b.Requests {
		d[k] = v - a.Requests[k]
	}
	return d
}
