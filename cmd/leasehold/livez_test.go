package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasehold/leasehold/election"
)

// fakeSource leads or not and fails its checks as told.
type fakeSource struct {
	check, live error
}

func (f fakeSource) Observe() (election.Leader, <-chan struct{}) {
	return election.Leader{Synced: true}, make(chan struct{})
}
func (f fakeSource) Check(*http.Request) error { return f.check }
func (f fakeSource) Live(*http.Request) error  { return f.live }

// TestLivezIgnoresAnUnreachableAPI: /healthz fails while the API cannot be
// reached, but /livez, which liveness probes use, fails only when the work
// outlives its term: an apiserver outage must not restart every replica.
func TestLivezIgnoresAnUnreachableAPI(t *testing.T) {
	for _, tc := range []struct {
		name           string
		src            fakeSource
		healthz, livez int
	}{
		{"healthy", fakeSource{}, 200, 200},
		{"API unreachable", fakeSource{check: errors.New("apiserver unreachable")}, 500, 200},
		{"work past its deadline", fakeSource{check: errors.New("late"), live: errors.New("late")}, 500, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := leaderHandler(tc.src, "me", "default/x", prometheus.NewRegistry())
			for path, want := range map[string]int{"/healthz": tc.healthz, "/livez": tc.livez} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
				if rec.Code != want {
					t.Errorf("%s: %d, want %d (%s)", path, rec.Code, want, rec.Body)
				}
			}
		})
	}
}
