package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lock"
	"github.com/leasehold/leasehold/shard"
)

// describeCmd is `leasehold describe NAME...`: Leases in words, with their
// Events.
type describeCmd struct {
	*app
	now func() time.Time
}

func newDescribeCmd(a *app) *cobra.Command {
	d := &describeCmd{app: a, now: time.Now}
	cmd := &cobra.Command{
		Use:   "describe NAME...",
		Short: "Describe Leases: holder, state, times, token, handoff, Events",
		Long: `describe shows Leases (NAME or lease/NAME) in full: the holder and state, when
the holder acquired and last renewed the lease, the lease duration, the number
of transitions, the holder's fencing token (recorded by Leasehold holders), the
preferred holder of a requested handoff, the queue of waiters of a lock
(leasehold lock, Go Mutex and Semaphore), and the Lease's Events.

describe shardgroup/NAME shows a shard group (leasehold run --shards): its
members with their state, the shards each owns with the tokens of its claims,
the shards nobody owns and the claims waiting behind lower ones; describe
shardgroups shows every group in the namespace.

Events are there when the electors record them: leasehold run records
LeaderElection Events (became leader, stopped leading) when RBAC lets it
create events in the namespace; client-go electors and Go programs do when
given an event recorder.

A lease whose holderIdentity was edited without acquiring it (with kubectl
apply, for example) names a holder that has no token, and whose acquire and
renew times are the previous holder's: describe says so.

` + clockNote,
		Example: fmt.Sprintf(`  %[1]s describe my-app
  %[1]s describe lease/my-app lease/my-cron -n kube-system
  %[1]s describe shardgroup/workers`, cliName()),
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeLeaseNames(a, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			groups, isGroups, err := groupArgs(args)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			if isGroups {
				return asFailure(d.runGroups(cmd.Context(), groups))
			}
			names, err := leaseArgs(args)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			return asFailure(d.run(cmd.Context(), names))
		},
	}
	addNowFlag(cmd.Flags(), &d.now)
	return cmd
}

// runGroups describes shard groups (every group in the namespace without
// names), a blank line between two.
func (d *describeCmd) runGroups(ctx context.Context, names []string) error {
	cs, err := d.clientset()
	if err != nil {
		return err
	}
	ns, err := d.namespace()
	if err != nil {
		return err
	}
	groups, readErr := readGroups(ctx, cs, ns, names, d.now())
	for i, g := range groups {
		if i > 0 {
			fmt.Fprintln(d.io.Out)
		}
		describeGroup(d.io.Out, g)
	}
	if len(groups) == 0 && readErr == nil {
		return fmt.Errorf("no shard groups found in namespace %q", ns)
	}
	return readErr
}

// run describes each Lease, a blank line between two, and reports those it
// could not read after the others.
func (d *describeCmd) run(ctx context.Context, names []string) error {
	cs, err := d.clientset()
	if err != nil {
		return err
	}
	ns, err := d.namespace()
	if err != nil {
		return err
	}
	var errs []error
	described := 0
	for _, name := range names {
		if described > 0 {
			fmt.Fprintln(d.io.Out)
		}
		if err := d.describe(ctx, cs, ns, name); err != nil {
			errs = append(errs, err)
			continue
		}
		described++
	}
	return errors.Join(errs...)
}

func (d *describeCmd) describe(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	c, err := lease.NewClient(cs.CoordinationV1(), ns, name)
	if err != nil {
		return err
	}
	s, err := c.Get(ctx)
	if err != nil {
		return leaseError(ns, name, err)
	}
	l := s.Object()
	now := d.now()
	describeLease(d.io.Out, l, now)
	describeQueue(ctx, d.io.Out, cs, l, now)
	events, err := leaseEvents(ctx, cs, l)
	if err != nil {
		fmt.Fprintf(d.io.Out, "Events:\t<unable to list: %v>\n", err)
		return nil
	}
	describeEvents(d.io.Out, events, now)
	return nil
}

// describeLease writes the Lease's fields, one "Label: value" per line.
func describeLease(w io.Writer, l *coordinationv1.Lease, now time.Time) {
	v := viewOf(l, now)
	rec := v.Record
	line := func(label, value string) { fmt.Fprintf(w, "%-18s%s\n", label+":", value) }
	recordTime := func(t time.Time) string {
		if v.ForeignEdit && !t.IsZero() {
			return formatRecordTime(t, now) + ", by the previous holder"
		}
		return formatRecordTime(t, now)
	}
	line("Name", l.Name)
	line("Namespace", l.Namespace)
	line("Labels", describeLabels(l.Labels))
	line("Holder", orNone(rec.Holder))
	line("State", describeState(v))
	line("Acquired", recordTime(rec.AcquireTime))
	line("Renewed", recordTime(rec.RenewTime))
	line("Lease Duration", v.leaseDuration())
	line("Transitions", fmt.Sprint(rec.Transitions))
	line("Fencing Token", v.token())
	line("Preferred Holder", v.preferred())
	if v.ForeignEdit {
		line("Warning", foreignEditNote(rec.Holder))
	}
	if l.Labels[shard.GroupLabel] != "" {
		describeMember(line, l)
	}
}

// describeMember adds what a shard group's membership Lease says: the
// group, its shard count and the shards this member claims, by token.
func describeMember(line func(label, value string), l *coordinationv1.Lease) {
	m, err := shard.MemberOf(l)
	line("Shard Group", m.Group)
	if err != nil {
		line("Warning", err.Error())
		return
	}
	line("Shards", fmt.Sprint(m.Shards))
	byTok := map[lease.Token][]int{}
	for s, t := range m.Claims {
		byTok[t] = append(byTok[t], s)
	}
	toks := make([]lease.Token, 0, len(byTok))
	for t := range byTok {
		toks = append(toks, t)
	}
	slices.Sort(toks)
	var parts []string
	for _, t := range toks {
		parts = append(parts, fmt.Sprintf("%s (token %s)", shard.Ranges(byTok[t]), t))
	}
	if len(parts) == 0 {
		parts = []string{noValue}
	}
	line("Claimed Shards", fmt.Sprintf("%d: %s", len(m.Claims), strings.Join(parts, ", ")))
	line("See Also", fmt.Sprintf("%s describe shardgroup/%s -n %s", cliName(), m.Group, l.Namespace))
}

// foreignEditNote explains a holder named by a foreign edit.
func foreignEditNote(holder string) string {
	indent := "\n" + strings.Repeat(" ", 18)
	return "the record was edited without acquiring (holderIdentity changed to " + holder + "," +
		indent + "with kubectl apply for example): " + holder + " never acquired the lease and" +
		indent + "has no token; the acquire and renew times belong to the previous holder"
}

func describeLabels(m map[string]string) string {
	if len(m) == 0 {
		return noValue
	}
	return strings.ReplaceAll(labels.Set(m).String(), ",", "\n"+strings.Repeat(" ", 18))
}

func describeState(v leaseView) string {
	const how = "(renewTime + leaseDurationSeconds, by this machine's clock)"
	switch {
	case v.State == stateReleased:
		return stateReleased
	case !v.HasExpiry:
		return "held (no renewTime: expiry unknown)"
	case v.State == stateExpired:
		return fmt.Sprintf("expired %s ago %s", duration.HumanDuration(-v.ExpiresIn), how)
	default:
		return fmt.Sprintf("held, expires in %s %s", duration.HumanDuration(v.ExpiresIn), how)
	}
}

// describeQueue shows the waiters of a lock's queue, first first; nothing
// for a Lease that is not a lock's.
func describeQueue(ctx context.Context, w io.Writer, cs kubernetes.Interface, l *coordinationv1.Lease, now time.Time) {
	q, err := lock.ReadQueue(ctx, cs.CoordinationV1(), l)
	switch {
	case err != nil:
		fmt.Fprintf(w, "%-18s<unable to list: %v>\n", "Queue:", err)
	case l.Labels == nil || len(q) == 0 && l.Labels["leasehold.io/queue"] == "":
	case len(q) == 0:
		fmt.Fprintf(w, "%-18s%s\n", "Queue:", "<empty>")
	default:
		fmt.Fprintf(w, "%-18s%d waiter(s), served in this order:\n", "Queue:", len(q))
		for i, e := range q {
			fmt.Fprintf(w, "  %d. %s (entry %s, renewed %s ago)\n", i+1, e.Identity, e.Lease, duration.HumanDuration(now.Sub(e.RenewTime)))
		}
	}
}

// leaseEvents lists the core/v1 Events about this incarnation of the Lease,
// oldest first, as kubectl describe finds them.
func leaseEvents(ctx context.Context, cs kubernetes.Interface, l *coordinationv1.Lease) ([]corev1.Event, error) {
	sel := fields.Set{
		"involvedObject.kind": "Lease",
		"involvedObject.name": l.Name,
	}
	if l.UID != "" {
		sel["involvedObject.uid"] = string(l.UID)
	}
	list, err := cs.CoreV1().Events(l.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel.AsSelector().String()})
	if err != nil {
		return nil, listError("events", "", l.Namespace, err)
	}
	evs := list.Items
	sort.SliceStable(evs, func(i, j int) bool { return eventTime(evs[i]).Before(eventTime(evs[j])) })
	return evs, nil
}

// eventTime is when an Event last happened.
func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	default:
		return e.CreationTimestamp.Time
	}
}

func describeEvents(w io.Writer, evs []corev1.Event, now time.Time) {
	if len(evs) == 0 {
		fmt.Fprintf(w, "%-18s%s\n", "Events:", noValue)
		return
	}
	fmt.Fprintln(w, "Events:")
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintln(tw, "  Type\tReason\tAge\tFrom\tMessage")
	fmt.Fprintln(tw, "  ----\t------\t----\t----\t-------")
	for _, e := range evs {
		age := duration.HumanDuration(now.Sub(eventTime(e)))
		if e.Count > 1 && !e.FirstTimestamp.IsZero() {
			age = fmt.Sprintf("%s (x%d over %s)", age, e.Count, duration.HumanDuration(now.Sub(e.FirstTimestamp.Time)))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, age, eventSource(e), strings.TrimSpace(e.Message))
	}
	_ = tw.Flush()
}

func eventSource(e corev1.Event) string {
	component, host := e.Source.Component, e.Source.Host
	if component == "" {
		component, host = e.ReportingController, e.ReportingInstance
	}
	if host != "" {
		return component + ", " + host
	}
	return component
}
