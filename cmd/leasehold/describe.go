package main

import (
	"context"
	"fmt"
	"io"
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
)

// describeCmd is `leasehold describe NAME`: one Lease in words, with its
// Events.
type describeCmd struct {
	*app
	now func() time.Time
}

func newDescribeCmd(a *app) *cobra.Command {
	d := &describeCmd{app: a, now: time.Now}
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Describe a Lease: holder, state, times, token, preferred holder, Events",
		Long: `describe shows one Lease in full: its holder and state, when the holder acquired
and last renewed it, the lease duration, the number of transitions, the
holder's fencing token (recorded by Leasehold holders), the preferred holder of
a requested handoff, and the Lease's Events (for example the LeaderElection
Events that electors record when they start and stop leading).

` + clockNote,
		Example: fmt.Sprintf(`  %[1]s describe my-app
  %[1]s describe my-app -n kube-system`, cliName()),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return asFailure(d.run(cmd.Context(), args[0]))
		},
	}
	addNowFlag(cmd.Flags(), &d.now)
	return cmd
}

func (d *describeCmd) run(ctx context.Context, name string) error {
	cs, err := d.clientset()
	if err != nil {
		return err
	}
	ns, err := d.namespace()
	if err != nil {
		return err
	}
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
	line("Name", l.Name)
	line("Namespace", l.Namespace)
	line("Labels", describeLabels(l.Labels))
	line("Holder", orNone(rec.Holder))
	line("State", describeState(v))
	line("Acquired", formatRecordTime(rec.AcquireTime, now))
	line("Renewed", formatRecordTime(rec.RenewTime, now))
	line("Lease Duration", v.leaseDuration())
	line("Transitions", fmt.Sprint(rec.Transitions))
	line("Fencing Token", v.token())
	line("Preferred Holder", v.preferred())
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
