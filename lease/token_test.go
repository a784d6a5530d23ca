package lease_test

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/lease"
)

func TestTokenStringParseRoundTrip(t *testing.T) {
	for _, tok := range []lease.Token{1, 9, 10, 42, 1 << 32, math.MaxInt64, math.MaxUint64} {
		t.Run(tok.String(), func(t *testing.T) {
			if want := strconv.FormatUint(uint64(tok), 10); tok.String() != want {
				t.Errorf("String() = %q, want %q", tok.String(), want)
			}
			got, err := lease.ParseToken(tok.String())
			if err != nil {
				t.Fatalf("ParseToken(%q): %v", tok.String(), err)
			}
			if got != tok {
				t.Errorf("ParseToken(%q) = %d, want %d", tok.String(), got, tok)
			}
			if got.IsZero() {
				t.Errorf("ParseToken(%q).IsZero() = true", tok.String())
			}
		})
	}
}

func TestTokenZero(t *testing.T) {
	var zero lease.Token
	if !zero.IsZero() {
		t.Error("zero Token: IsZero() = false")
	}
	if zero.String() != "0" {
		t.Errorf("zero Token: String() = %q, want \"0\"", zero.String())
	}
	if _, err := lease.ParseToken(zero.String()); err == nil {
		t.Error("ParseToken accepts the zero Token's String()")
	}
}

func TestParseTokenRejects(t *testing.T) {
	tests := []struct {
		in      string
		wantMsg string
	}{
		{"", "positive decimal integer"},
		{"   ", "positive decimal integer"},
		{"0", "zero means no token"},
		{"00", "zero means no token"},
		{"-1", "positive decimal integer"},
		{"+1", "positive decimal integer"},
		{"abc", "positive decimal integer"},
		{"1.5", "positive decimal integer"},
		{"1e3", "positive decimal integer"},
		{"0x10", "positive decimal integer"},
		{"1_000", "positive decimal integer"},
		{"12abc", "positive decimal integer"},
		{"1 2", "positive decimal integer"},
		{"18446744073709551616", "positive decimal integer"}, // MaxUint64 + 1
		{"99999999999999999999999", "positive decimal integer"},
		{"42/3", "positive decimal integer"}, // an annotation is not a token
	}
	for _, tc := range tests {
		t.Run(strconv.Quote(tc.in), func(t *testing.T) {
			tok, err := lease.ParseToken(tc.in)
			if err == nil {
				t.Fatalf("ParseToken(%q) = %d, want an error", tc.in, tok)
			}
			if tok != 0 {
				t.Errorf("ParseToken(%q) returned token %d alongside its error, want 0", tc.in, tok)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "lease: ") || !strings.Contains(msg, strconv.Quote(tc.in)) || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("ParseToken(%q) error %q: want the lease: prefix, the quoted input and %q", tc.in, msg, tc.wantMsg)
			}
		})
	}
}

func TestParseTokenLenient(t *testing.T) {
	// Current behaviour: surrounding white space (a trailing newline from a
	// file or an environment variable) and leading zeros are accepted.
	tests := []struct {
		in   string
		want lease.Token
	}{
		{" 42", 42},
		{"42\n", 42},
		{"\t7 ", 7},
		{"007", 7},
		{"18446744073709551615", math.MaxUint64},
	}
	for _, tc := range tests {
		t.Run(strconv.Quote(tc.in), func(t *testing.T) {
			got, err := lease.ParseToken(tc.in)
			if err != nil || got != tc.want {
				t.Errorf("ParseToken(%q) = %d, %v; want %d, nil", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestTokenOrderIsNumeric(t *testing.T) {
	in := []string{"10", "9", "100", "2", "18446744073709551615", "1000000000000"}
	var toks []lease.Token
	for _, s := range in {
		tok, err := lease.ParseToken(s)
		if err != nil {
			t.Fatalf("ParseToken(%q): %v", s, err)
		}
		toks = append(toks, tok)
	}
	slices.Sort(toks)
	var got []string
	for _, tok := range toks {
		got = append(got, tok.String())
	}
	want := []string{"2", "9", "10", "100", "1000000000000", "18446744073709551615"}
	if !slices.Equal(got, want) {
		t.Errorf("sorted tokens = %v, want %v", got, want)
	}
	// The decimal strings do not sort that way; tokens must be compared as
	// numbers, which is what String's documentation promises.
	if slices.IsSorted(got) {
		t.Errorf("decimal strings %v sort lexically the same way; the test no longer shows the difference", got)
	}
}

// heldLease returns a Lease held by holder at the given transition count,
// carrying annotation as TokenAnnotation when it is not empty.
func heldLease(holder string, transitions int32, annotation string) *coordinationv1.Lease {
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "lock", ResourceVersion: "200", UID: "uid-1"},
		Spec: lease.Record{
			Holder: holder, LeaseDuration: 15 * time.Second, AcquireTime: t0, RenewTime: t0, Transitions: transitions,
		}.ToSpec(),
	}
	if annotation != "" {
		l.Annotations = map[string]string{lease.TokenAnnotation: annotation}
	}
	return l
}

func TestSnapshotToken(t *testing.T) {
	tests := []struct {
		name        string
		holder      string
		transitions int32
		annotation  string
		want        lease.Token
		foreign     bool
	}{
		{"matching holder and transitions", "a", 3, "150/3/a", 150, false},
		{"transitions moved on (client-go took over)", "b", 4, "150/3/a", 0, false},
		{"transitions behind", "a", 2, "150/3/a", 0, false},
		// kubectl apply that changes only holderIdentity: the old holder's
		// token must not be credited to the new one.
		{"holder edited by a foreign writer", "b", 3, "150/3/a", 0, true},
		{"released", "", 3, "150/3/a", 0, false},
		{"no annotation", "a", 3, "", 0, false},
		{"old format without holder", "a", 3, "150/3", 0, false},
		{"token without transitions", "a", 3, "150", 0, false},
		{"zero token", "a", 3, "0/3/a", 0, false},
		{"garbage", "a", 3, "x/y/z", 0, false},
		{"holder with slashes", "ns/a", 3, "150/3/ns/a", 150, false},
		{"max token", "a", math.MaxInt32, "18446744073709551615/2147483647/a", math.MaxUint64, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := lease.NewSnapshot(heldLease(tc.holder, tc.transitions, tc.annotation))
			if s.Token != tc.want {
				t.Errorf("Snapshot.Token = %d, want %d", s.Token, tc.want)
			}
			if s.ForeignEdit != tc.foreign {
				t.Errorf("Snapshot.ForeignEdit = %v, want %v", s.ForeignEdit, tc.foreign)
			}
		})
	}
}

func TestNewSnapshot(t *testing.T) {
	l := heldLease("a", 3, "150/3/a")
	l.Labels = map[string]string{"app": "x"}
	s := lease.NewSnapshot(l)
	if s.Namespace != "ns" || s.Name != "lock" || s.UID != "uid-1" || s.ResourceVersion != "200" {
		t.Errorf("snapshot identity = %s/%s uid %s rv %s", s.Namespace, s.Name, s.UID, s.ResourceVersion)
	}
	checkRecord(t, s.Record, lease.FromSpec(l.Spec))

	// The snapshot is immutable: neither the Lease it was built from nor
	// the objects it hands out reach its state.
	l.Labels["app"] = "changed"
	*l.Spec.HolderIdentity = "changed"
	obj := s.Object()
	if obj.Labels["app"] != "x" || *obj.Spec.HolderIdentity != "a" {
		t.Errorf("Object() sees changes made to the source Lease: labels %v holder %q", obj.Labels, *obj.Spec.HolderIdentity)
	}
	obj.Labels["app"] = "changed again"
	if again := s.Object(); again.Labels["app"] != "x" {
		t.Errorf("Object() returns shared state: labels %v", again.Labels)
	}
}

func TestClientRecordsTokenAnnotation(t *testing.T) {
	ctx := t.Context()
	srv := fakelease.New()
	c, err := lease.NewClient(srv, "ns", "lock")
	if err != nil {
		t.Fatal(err)
	}
	created, err := c.Create(ctx, lease.Record{}.Released(t0))
	if err != nil {
		t.Fatal(err)
	}
	if created.Token != 0 {
		t.Errorf("created (released) lease has token %d", created.Token)
	}

	tok, err := lease.ParseToken(created.ResourceVersion)
	if err != nil {
		t.Fatal(err)
	}
	rec := lease.Record{Holder: "a", LeaseDuration: 15 * time.Second, AcquireTime: t0, RenewTime: t0, Transitions: created.Record.Transitions + 1}
	held, err := c.Update(ctx, created, rec, tok)
	if err != nil {
		t.Fatal(err)
	}
	wantAnn := tok.String() + "/1/a"
	if got := srv.Lease("ns", "lock").Annotations[lease.TokenAnnotation]; got != wantAnn {
		t.Errorf("stored %s = %q, want %q", lease.TokenAnnotation, got, wantAnn)
	}
	if held.Token != tok {
		t.Errorf("Update returned token %d, want %d", held.Token, tok)
	}
	if got, err := c.Get(ctx); err != nil || got.Token != tok {
		t.Errorf("Get: token %v, err %v; want %d", got, err, tok)
	}

	// A zero token leaves the annotation alone; once another holder (here
	// one that does not write the annotation, like client-go) moves the
	// transition count on, the old annotation no longer names a token.
	rec2 := lease.Record{Holder: "client-go", LeaseDuration: 15 * time.Second, AcquireTime: t0, RenewTime: t0, Transitions: 2}
	other, err := c.Update(ctx, held, rec2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Lease("ns", "lock").Annotations[lease.TokenAnnotation]; got != wantAnn {
		t.Errorf("Update with zero token rewrote the annotation to %q", got)
	}
	if other.Token != 0 {
		t.Errorf("lease taken over at transitions 2 reports stale token %d", other.Token)
	}
}
