package shard

import (
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/lease"
)

func snapWith(rec lease.Record, annotation string) *lease.Snapshot {
	return lease.NewSnapshot(&coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "g-a", ResourceVersion: "42", Annotations: map[string]string{MemberAnnotation: annotation}},
		Spec:       rec.ToSpec(),
	})
}

func TestRecordRoundTripAndHandEdits(t *testing.T) {
	rec := lease.Record{Holder: "a", LeaseDuration: 15 * time.Second, Transitions: 3}
	st := state{k: 64, claims: map[int]lease.Token{0: 100, 1: 100, 2: 100, 7: 100, 9: pending, 63: 205}}
	v := st.encode(rec)
	if !strings.Contains(v, "100:0-2.7") || !strings.Contains(v, "p:9") {
		t.Errorf("encode = %q, want ranges grouped by token", v)
	}
	got, err := decode(snapWith(rec, v))
	if err != nil || got.k != 64 || len(got.claims) != len(st.claims) {
		t.Fatalf("decode(%q) = %+v, %v", v, got, err)
	}
	for s, tok := range st.claims {
		if got.claims[s] != tok {
			t.Errorf("shard %d: token %v, want %v", s, got.claims[s], tok)
		}
	}
	st.leaving = true
	if got, err := decode(snapWith(rec, st.encode(rec))); err != nil || !got.leaving || len(got.claims) != len(st.claims) {
		t.Errorf("a leaving member's record decodes as %+v, %v", got, err)
	}
	for name, edit := range map[string]func() (lease.Record, string){
		"claims dropped by hand": func() (lease.Record, string) { return rec, strings.Replace(v, "100:0-2.7|", "", 1) },
		"holder changed":         func() (lease.Record, string) { r := rec; r.Holder = "b"; return r, v },
		"duration shortened":     func() (lease.Record, string) { r := rec; r.LeaseDuration = time.Second; return r, v },
		"garbage":                func() (lease.Record, string) { return rec, "hello" },
		"shard out of range": func() (lease.Record, string) {
			return rec, state{k: 4}.encode(rec)[:0] + "v1;k=4;c=1:9;sum=" + checksum(rec, "v1;k=4;c=1:9")
		},
	} {
		r, a := edit()
		if _, err := decode(snapWith(r, a)); err == nil {
			t.Errorf("%s: decode accepted %q", name, a)
		}
	}
}
