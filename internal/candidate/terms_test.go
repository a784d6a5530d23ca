package candidate

import (
	"strings"
	"testing"
)

func TestRecorderAndCheckers(t *testing.T) {
	tests := []struct {
		name          string
		events        []Event
		overlaps      int
		tokensBack    int
		wantOpenUntil int64
	}{
		{
			name: "clean handovers, a kill closes at exit",
			events: []Event{
				{Ev: "start", ID: "a", Impl: "leasehold", Token: "10", Mono: 100},
				{Ev: "stop", ID: "a", Mono: 200},
				{Ev: "start", ID: "b", Impl: "client-go", Token: "1", Mono: 210},
				{Ev: "exited", ID: "b", Mono: 300},
				{Ev: "start", ID: "c", Impl: "leasehold", Token: "12", Mono: 300},
			},
		},
		{
			name: "second leader starts before the first stops",
			events: []Event{
				{Ev: "start", ID: "a", Impl: "leasehold", Token: "10", Mono: 100},
				{Ev: "start", ID: "b", Impl: "leasehold", Token: "11", Mono: 150},
				{Ev: "stop", ID: "a", Mono: 200},
			},
			overlaps: 1,
		},
		{
			name: "an open term overlaps a later one",
			events: []Event{
				{Ev: "start", ID: "a", Impl: "client-go", Mono: 100},
				{Ev: "start", ID: "b", Impl: "leasehold", Token: "5", Mono: 500},
			},
			overlaps: 1,
		},
		{
			name: "tokens going backwards",
			events: []Event{
				{Ev: "start", ID: "a", Impl: "leasehold", Token: "10", Mono: 100},
				{Ev: "stop", ID: "a", Mono: 200},
				{Ev: "start", ID: "b", Impl: "leasehold", Token: "10", Mono: 300},
				{Ev: "stop", ID: "b", Mono: 400},
				{Ev: "start", ID: "c", Impl: "leasehold", Token: "9", Mono: 500},
			},
			tokensBack: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Recorder
			for _, ev := range tt.events {
				r.Add(ev)
			}
			terms := r.Terms(1000)
			if got := Overlaps(terms); len(got) != tt.overlaps {
				t.Errorf("overlaps = %d (%s), want %d", len(got), strings.Join(got, "; "), tt.overlaps)
			}
			if got := TokensBackwards(terms); len(got) != tt.tokensBack {
				t.Errorf("tokens backwards = %d (%s), want %d", len(got), strings.Join(got, "; "), tt.tokensBack)
			}
			for _, term := range terms {
				if term.End < term.Start {
					t.Errorf("term %+v ends before it starts", term)
				}
			}
		})
	}
}
