package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/leasehold/leasehold/election"
)

// leaderView is the JSON served at /leader and, one object per line, at
// /leader/watch.
type leaderView struct {
	// Holder is the identity holding the lease, "" when it is free.
	Holder string `json:"holder"`
	// Token is the holder's fencing token (0 when unknown: a free lease, or
	// a holder that does not record one, such as client-go).
	Token uint64 `json:"token"`
	// Since is when the holder acquired the lease (its clock), RFC 3339.
	Since string `json:"since,omitempty"`
	// Transitions is the lease's leaseTransitions.
	Transitions int32 `json:"transitions"`
	// Me is true while this process leads.
	Me bool `json:"me"`
	// Identity is this process's identity.
	Identity string `json:"identity"`
	// Lease is "namespace/name".
	Lease string `json:"lease"`
}

// leaderSource is what the HTTP endpoints need from an elector.
type leaderSource interface {
	Observe() (election.Leader, <-chan struct{})
	Check(*http.Request) error
}

var _ leaderSource = (*election.Elector)(nil)

// healthSource is an elector whose health check also fails while the
// Kubernetes API cannot be reached.
type healthSource struct {
	*election.Elector
	api *apiStatus
}

// Live is the elector's own check: it fails only when this process still
// leads past its renew deadline. An unreachable API is no reason to
// restart a replica, so /livez ignores it.
func (h healthSource) Live(r *http.Request) error { return h.Elector.Check(r) }

// Check fails while the API cannot be reached, then as the elector's does.
func (h healthSource) Check(r *http.Request) error {
	if err := h.api.Err(); err != nil {
		return apiMessage(err)
	}
	return h.Elector.Check(r)
}

// leaderHandler serves /leader, /leader/watch, /healthz (fails while the API
// is unreachable or the work runs past its deadline), /livez (only the
// latter: for liveness probes), /readyz and /metrics for one elector.
func leaderHandler(e leaderSource, identity, leaseRef string, gatherer prometheus.Gatherer) http.Handler {
	view := func() (leaderView, <-chan struct{}) {
		l, changed := e.Observe()
		v := leaderView{Holder: l.Holder, Token: uint64(l.Token), Transitions: l.Transitions, Me: l.IsMe, Identity: identity, Lease: leaseRef}
		if !l.AcquiredAt.IsZero() && l.Holder != "" {
			v.Since = l.AcquiredAt.UTC().Format(time.RFC3339)
		}
		return v, changed
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /leader", func(w http.ResponseWriter, _ *http.Request) {
		v, _ := view()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	})
	mux.HandleFunc("GET /leader/watch", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		rc := http.NewResponseController(w)
		enc := json.NewEncoder(w)
		var last *leaderView
		for {
			v, changed := view()
			if last == nil || v != *last {
				if enc.Encode(v) != nil || rc.Flush() != nil {
					return
				}
				last = &v
			}
			select {
			case <-r.Context().Done():
				return
			case <-changed:
			}
		}
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := e.Check(r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	live := e.Check
	if l, ok := e.(interface{ Live(*http.Request) error }); ok {
		live = l.Live
	}
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		if err := live(r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if l, _ := e.Observe(); !l.IsMe {
			http.Error(w, "not the leader", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "leader")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return mux
}

// httpServer is an HTTP server whose Close stops it, ends streaming
// responses, and waits for its goroutine.
type httpServer struct {
	srv    *http.Server
	addr   net.Addr
	cancel context.CancelFunc
	wg     sync.WaitGroup
	err    error // from Serve; read after wg.Wait
}

// serveHTTP listens on addr and serves h until Close.
func serveHTTP(addr string, h http.Handler) (*httpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http: %w", err)
	}
	// Every request's context derives from base, so that cancelling it ends
	// /leader/watch streams, which Shutdown alone would wait for.
	base, cancel := context.WithCancel(context.Background())
	s := &httpServer{addr: ln.Addr(), cancel: cancel, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return base },
	}}
	s.wg.Go(func() {
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	})
	return s, nil
}

// Addr is the address it listens on (with the real port when asked for :0).
func (s *httpServer) Addr() net.Addr { return s.addr }

// Close ends streams, shuts the server down (waiting up to five seconds for
// requests in flight) and joins it.
func (s *httpServer) Close() error {
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	s.wg.Wait()
	return errors.Join(err, s.err)
}
