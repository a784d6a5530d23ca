package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/shard"
)

// A shard group (leasehold run --shards, package shard) is the set of its
// members' Leases, labelled shard.GroupLabel=<group>. get and describe
// name groups as shardgroup/NAME, or all of them with the word shardgroups.

// groupTypes are the type names of a shard group on the command line.
var groupTypes = []string{"shardgroup", "shardgroups", "shard-group", "shard-groups", "sg"}

// groupArgs reports whether args name shard groups, and which (none: every
// group in the namespace). Leases and groups cannot be mixed.
func groupArgs(args []string) (names []string, isGroups bool, err error) {
	var leases []string
	for _, arg := range args {
		typ, name, typed := strings.Cut(arg, "/")
		switch {
		case !typed && slices.Contains(groupTypes, strings.ToLower(arg)):
			isGroups = true
		case typed && slices.Contains(groupTypes, strings.ToLower(typ)):
			if name == "" {
				return nil, false, fmt.Errorf("%q: a shard group name must not be empty", arg)
			}
			isGroups = true
			names = append(names, name)
		default:
			leases = append(leases, arg)
		}
	}
	if isGroups && len(leases) > 0 {
		return nil, false, fmt.Errorf("name Leases or shard groups (shardgroup/NAME), not both: %q", leases)
	}
	return names, isGroups, nil
}

// shardGroup is what the membership Leases of one group say.
type shardGroup struct {
	Namespace, Name string
	// Shards is the shard count the members record (the most common one
	// when they differ); 0 when no member's record can be read.
	Shards  int
	Members []groupMember // by identity, then Lease name
	// Owner is, per shard, the member whose claim has the lowest token
	// (the one that runs it, or will as soon as it has started), "" none.
	Owner []string
}

// groupMember is one membership Lease of a group.
type groupMember struct {
	Lease, Identity string
	// State is held, expired, released, leaving (held, its shards moving
	// away), or edited (Err says why the record is not trusted).
	State string
	// Owned are the shards this member runs or is about to run; Waiting
	// the ones it claims behind another member's lower claim.
	Owned, Waiting []int
	Tokens         map[int]lease.Token
	Err            error
}

// held reports whether the member counts as live.
func (m groupMember) held() bool { return m.State == stateHeld || m.State == "leaving" }

// groupsOf groups the membership Leases among items by namespace and group,
// judged at now, sorted.
func groupsOf(items []coordinationv1.Lease, now time.Time) []shardGroup {
	byGroup := map[[2]string][]*coordinationv1.Lease{}
	for i := range items {
		l := &items[i]
		if g := l.Labels[shard.GroupLabel]; g != "" {
			k := [2]string{l.Namespace, g}
			byGroup[k] = append(byGroup[k], l)
		}
	}
	keys := slices.Collect(maps.Keys(byGroup))
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[0]+"/"+a[1], b[0]+"/"+b[1]) })
	out := make([]shardGroup, 0, len(keys))
	for _, k := range keys {
		out = append(out, groupOf(k[0], k[1], byGroup[k], now))
	}
	return out
}

func groupOf(ns, name string, leases []*coordinationv1.Lease, now time.Time) shardGroup {
	g := shardGroup{Namespace: ns, Name: name}
	counts := map[int]int{}
	members := make([]shard.Member, len(leases))
	for i, l := range leases {
		m, err := shard.MemberOf(l)
		members[i] = m
		gm := groupMember{Lease: l.Name, Identity: m.Identity, State: viewOf(l, now).State, Tokens: m.Claims, Err: err}
		switch {
		case err != nil:
			gm.State = "edited"
		case m.Leaving && gm.State == stateHeld:
			gm.State = "leaving"
		}
		if err == nil {
			counts[m.Shards]++
		}
		g.Members = append(g.Members, gm)
	}
	for k, n := range counts {
		if n > counts[g.Shards] || n == counts[g.Shards] && k > g.Shards {
			g.Shards = k
		}
	}
	// A shard's owner is the member with the lowest claim, as the members
	// themselves judge it.
	g.Owner = make([]string, g.Shards)
	lowest := make([]lease.Token, g.Shards)
	for i, m := range members {
		if g.Members[i].Err != nil || m.Shards != g.Shards {
			continue
		}
		for s, tok := range m.Claims {
			if g.Owner[s] == "" || tok < lowest[s] {
				g.Owner[s], lowest[s] = m.Identity, tok
			}
		}
	}
	for i := range g.Members {
		gm := &g.Members[i]
		for s := range gm.Tokens {
			if s < len(g.Owner) && g.Owner[s] == gm.Identity && gm.Tokens[s] == lowest[s] {
				gm.Owned = append(gm.Owned, s)
			} else {
				gm.Waiting = append(gm.Waiting, s)
			}
		}
		slices.Sort(gm.Owned)
		slices.Sort(gm.Waiting)
	}
	slices.SortFunc(g.Members, func(a, b groupMember) int {
		return strings.Compare(a.Identity+"\x00"+a.Lease, b.Identity+"\x00"+b.Lease)
	})
	return g
}

// unowned returns the shards nobody claims.
func (g shardGroup) unowned() []int {
	var out []int
	for s, o := range g.Owner {
		if o == "" {
			out = append(out, s)
		}
	}
	return out
}

// live counts the members that hold their Lease.
func (g shardGroup) live() int {
	n := 0
	for _, m := range g.Members {
		if m.held() {
			n++
		}
	}
	return n
}

// owned is "m0=3,m1=3,m2=2": the shards owned by each live member and by
// any other member that still owns some.
func (g shardGroup) owned() string {
	var parts []string
	for _, m := range g.Members {
		if m.held() || len(m.Owned) > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", orNone(m.Identity), len(m.Owned)))
		}
	}
	if len(parts) == 0 {
		return noValue
	}
	return strings.Join(parts, ",")
}

// printGroupTable prints one line per group: GROUP, SHARDS, MEMBERS (live
// of all), OWNED (per member) and UNOWNED.
func printGroupTable(w io.Writer, groups []shardGroup, withNamespace, noHeaders bool) error {
	tw := printers.GetNewTabWriter(w)
	if !noHeaders {
		if withNamespace {
			fmt.Fprint(tw, "NAMESPACE\t")
		}
		fmt.Fprintln(tw, "SHARD GROUP\tSHARDS\tMEMBERS\tOWNED\tUNOWNED")
	}
	for _, g := range groups {
		if withNamespace {
			fmt.Fprintf(tw, "%s\t", g.Namespace)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%s\t%d\n", g.Name, g.Shards, g.live(), len(g.Members), g.owned(), len(g.unowned()))
	}
	return tw.Flush()
}

// readGroups lists the membership Leases of the named groups (all groups
// with no names) in ns; a named group without Leases is reported.
func readGroups(ctx context.Context, cs kubernetes.Interface, ns string, names []string, now time.Time) ([]shardGroup, error) {
	req, err := labels.NewRequirement(shard.GroupLabel, "exists", nil)
	if len(names) > 0 {
		req, err = labels.NewRequirement(shard.GroupLabel, "in", names)
	}
	if err != nil {
		return nil, err
	}
	list, err := cs.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.NewSelector().Add(*req).String()})
	if err != nil {
		return nil, listError("leases", coordinationv1.GroupName, ns, err)
	}
	groups := groupsOf(list.Items, now)
	var errs []error
	for _, n := range names {
		if !slices.ContainsFunc(groups, func(g shardGroup) bool { return g.Name == n }) {
			errs = append(errs, fmt.Errorf("shard group %q not found in namespace %q (no Lease labelled %s=%s)", n, ns, shard.GroupLabel, n))
		}
	}
	return groups, errors.Join(errs...)
}

// describeGroup writes a group's members and its assignment.
func describeGroup(w io.Writer, g shardGroup) {
	line := func(label, value string) { fmt.Fprintf(w, "%-18s%s\n", label+":", value) }
	line("Shard Group", g.Name)
	line("Namespace", g.Namespace)
	line("Shards", fmt.Sprint(g.Shards))
	line("Members", fmt.Sprintf("%d live of %d", g.live(), len(g.Members)))
	fmt.Fprintln(w, "Assignment:         (a shard's owner is the member whose claim has the lowest token)")
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintln(tw, "  MEMBER\tLEASE\tSTATE\tOWNED\tSHARDS (TOKEN)")
	for _, m := range g.Members {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", orNone(m.Identity), m.Lease, m.State, len(m.Owned), byToken(m.Owned, m.Tokens))
	}
	_ = tw.Flush()
	unowned := g.unowned()
	if len(unowned) == 0 {
		line("Unowned Shards", noValue)
	} else {
		line("Unowned Shards", fmt.Sprintf("%d: %s", len(unowned), shard.Ranges(unowned)))
	}
	for _, m := range g.Members {
		if len(m.Waiting) > 0 {
			line("Waiting", fmt.Sprintf("%s claims %s behind lower claims", orNone(m.Identity), byToken(m.Waiting, m.Tokens)))
		}
	}
	for _, m := range g.Members {
		if m.Err != nil {
			line("Warning", fmt.Sprintf("%s: %v", m.Lease, m.Err))
		}
	}
}

// byToken writes shards grouped by their claim's token, lowest first:
// "0-2 (123), 7 (130)".
func byToken(shards []int, tokens map[int]lease.Token) string {
	if len(shards) == 0 {
		return noValue
	}
	by := map[lease.Token][]int{}
	for _, s := range shards {
		by[tokens[s]] = append(by[tokens[s]], s)
	}
	toks := slices.Sorted(maps.Keys(by))
	parts := make([]string, 0, len(toks))
	for _, t := range toks {
		parts = append(parts, fmt.Sprintf("%s (%s)", shard.Ranges(by[t]), t))
	}
	return strings.Join(parts, ", ")
}
