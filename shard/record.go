package shard

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	coordinationv1 "k8s.io/api/coordination/v1"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/leasehold/leasehold/lease"
)

// GroupLabel labels every membership Lease with its group's name; members
// find each other with one label-selected watch.
const GroupLabel = "leasehold.io/shard-group"

// MemberAnnotation holds a member's shard state on its membership Lease:
// "v1;k=<shards>;c=<claims>[;leaving];sum=<checksum>". Claims are groups
// "<token>:<ranges>" separated by "|", where ranges are "a" or "a-b"
// separated by "." and token "p" (pending) means the version of the Lease
// that carries it. The checksum covers the holder, the lease duration, the
// transition count and everything before ";sum=", so an edit by hand that
// does not recompute it is recognised and never trusted.
const MemberAnnotation = "leasehold.io/shard-member"

// pending is the token of a claim written in this very version of the
// record: its token is that version's resourceVersion.
const pending lease.Token = 0

// state is what a member records about itself: the group's shard count and
// the shards it claims, each with its token (pending: this version).
type state struct {
	k      int
	claims map[int]lease.Token
	// leaving: the member is leaving the group; the others assign its
	// shards elsewhere at once, while its claims still count until given up.
	leaving bool
}

// encode returns the annotation value for st on a record with rec's holder,
// duration and transitions.
func (st state) encode(rec lease.Record) string {
	byTok := map[lease.Token][]int{}
	for s, t := range st.claims {
		byTok[t] = append(byTok[t], s)
	}
	toks := make([]lease.Token, 0, len(byTok))
	for t := range byTok {
		toks = append(toks, t)
	}
	slices.Sort(toks)
	var groups []string
	for _, t := range toks {
		name := "p"
		if t != pending {
			name = t.String()
		}
		groups = append(groups, name+":"+ranges(byTok[t]))
	}
	body := "v1;k=" + strconv.Itoa(st.k) + ";c=" + strings.Join(groups, "|")
	if st.leaving {
		body += ";leaving"
	}
	return body + ";sum=" + checksum(rec, body)
}

func checksum(rec lease.Record, body string) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\n%d\n%d\n%s", rec.Holder, *rec.ToSpec().LeaseDurationSeconds, rec.Transitions, body)
	return strconv.FormatUint(h.Sum64(), 36)
}

// ranges writes sorted shard numbers as "0-3.7.9-10".
func ranges(shards []int) string {
	slices.Sort(shards)
	var b strings.Builder
	for i := 0; i < len(shards); {
		j := i
		for j+1 < len(shards) && shards[j+1] == shards[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.Itoa(shards[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(shards[j]))
		}
		i = j + 1
	}
	return b.String()
}

// decode reads the state of snap. It fails, naming the problem, when the
// annotation is missing, malformed, or does not match the record it is on
// (an edit by hand).
func decode(snap *lease.Snapshot) (state, error) {
	v, ok := snap.Object().Annotations[MemberAnnotation]
	if !ok {
		return state{}, fmt.Errorf("no %s annotation", MemberAnnotation)
	}
	body, sum, ok := strings.Cut(v, ";sum=")
	if !ok || sum != checksum(snap.Record, body) {
		return state{}, fmt.Errorf("annotation %s does not match the record (holder %q, %v, transitions %d): edited by hand", MemberAnnotation, snap.Record.Holder, snap.Record.LeaseDuration, snap.Record.Transitions)
	}
	parts := strings.Split(body, ";")
	leaving := len(parts) == 4 && parts[3] == "leaving"
	if leaving {
		parts = parts[:3]
	}
	if len(parts) != 3 || parts[0] != "v1" || !strings.HasPrefix(parts[1], "k=") || !strings.HasPrefix(parts[2], "c=") {
		return state{}, fmt.Errorf("annotation %s: unknown format %q", MemberAnnotation, body)
	}
	k, err := strconv.Atoi(parts[1][2:])
	if err != nil || k <= 0 {
		return state{}, fmt.Errorf("annotation %s: bad shard count %q", MemberAnnotation, parts[1])
	}
	st := state{k: k, claims: map[int]lease.Token{}, leaving: leaving}
	if c := parts[2][2:]; c != "" {
		for g := range strings.SplitSeq(c, "|") {
			if err := st.addGroup(g); err != nil {
				return state{}, fmt.Errorf("annotation %s: %w", MemberAnnotation, err)
			}
		}
	}
	return st, nil
}

func (st state) addGroup(g string) error {
	tokStr, rs, ok := strings.Cut(g, ":")
	if !ok {
		return fmt.Errorf("bad claim group %q", g)
	}
	tok := pending
	if tokStr != "p" {
		t, err := lease.ParseToken(tokStr)
		if err != nil {
			return err
		}
		tok = t
	}
	for r := range strings.SplitSeq(rs, ".") {
		a, b, isRange := strings.Cut(r, "-")
		lo, err1 := strconv.Atoi(a)
		hi := lo
		var err2 error
		if isRange {
			hi, err2 = strconv.Atoi(b)
		}
		if err1 != nil || err2 != nil || lo < 0 || hi < lo || hi >= st.k {
			return fmt.Errorf("bad shard range %q for %d shards", r, st.k)
		}
		for s := lo; s <= hi; s++ {
			st.claims[s] = tok
		}
	}
	return nil
}

// memberLeaseName is the name of identity's membership Lease in group:
// "<group>-<identity>" when that is a valid Lease name, else the identity is
// replaced by a hash of it.
func memberLeaseName(group, identity string) string {
	n := group + "-" + identity
	if len(validation.IsDNS1123Subdomain(n)) == 0 {
		return n
	}
	return group + "-" + strconv.FormatUint(hashString(identity), 36)
}

// reason is a short label for an API error.
func reason(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, lease.ErrConflict):
		return "conflict"
	case errors.Is(err, lease.ErrForbidden):
		return "forbidden"
	case errors.Is(err, lease.ErrNotFound):
		return "notfound"
	case errors.Is(err, lease.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "other"
	}
}

// Member is what a membership Lease says, for tools that show a group
// (leasehold describe).
type Member struct {
	// Group is the group's name, Identity the member (the holder), "" when
	// the member has left or was taken over.
	Group, Identity string
	// Shards is the group's number of shards as this member records it.
	Shards int
	// Claims are the shards the member claims (it may be running them),
	// each with its claim's token.
	Claims map[int]lease.Token
	// Leaving: the member is leaving the group; the others take its shards
	// as soon as it gives them up.
	Leaving bool
}

// MemberOf reads a membership Lease. It fails, naming the problem, for a
// Lease that is not one or whose record was edited by hand.
func MemberOf(l *coordinationv1.Lease) (Member, error) {
	g := l.Labels[GroupLabel]
	if g == "" {
		return Member{}, fmt.Errorf("Lease %s/%s has no %s label: not a shard group member", l.Namespace, l.Name, GroupLabel)
	}
	s := lease.NewSnapshot(l)
	st, err := decode(s)
	if err != nil {
		return Member{Group: g, Identity: s.Record.Holder}, err
	}
	p := peer{snap: s, st: st, resolved: resolve(st, s.ResourceVersion)}
	return Member{Group: g, Identity: s.Record.Holder, Shards: st.k, Claims: p.claims(st.k), Leaving: st.leaving}, nil
}

// Ranges writes sorted shard numbers compactly, as "0-3.7.9-10".
func Ranges(shards []int) string { return ranges(slices.Clone(shards)) }
