package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/leasehold/leasehold/lease"
)

// Shared by get, describe, watch, release and handoff: how a Lease is judged
// and shown on the command line.

// The states a lease is shown in.
const (
	stateHeld     = "held"
	stateExpired  = "expired"
	stateReleased = "released"
)

// noValue is what kubectl prints for an absent value.
const noValue = "<none>"

// clockNote is the help paragraph for commands that judge expiry from a
// single read.
const clockNote = `STATE and EXPIRES IN are judged from the record alone, since one read has no
watch history to go by: a held lease is expired once renewTime +
leaseDurationSeconds has passed on this machine's clock. That compares the
holder's clock with yours, which Leasehold's elections never do (they count
the lease duration from the moment they saw the record change), so with clock
skew between the holder and you this view is off by the skew. A lease with no
holder is released.`

// unknownValue is what kubectl prints for a value that cannot be known.
const unknownValue = "<unknown>"

// leaseView is one Lease as the CLI shows it at a moment.
type leaseView struct {
	Namespace, Name string
	Record          lease.Record
	Token           lease.Token
	// ForeignEdit: the record names a holder that never acquired the lease
	// (holderIdentity was edited, by kubectl apply or hand-written code), so
	// its acquire and renew times, and any token, are the previous holder's
	// (lease.Snapshot.ForeignEdit).
	ForeignEdit bool
	// State is held, expired or released.
	State string
	// ExpiresIn is renewTime + duration − now: negative once expired. Valid
	// only with HasExpiry.
	ExpiresIn time.Duration
	HasExpiry bool
	// Age is how long ago the Lease object was created; valid when Created.
	Age     time.Duration
	Created bool
}

// viewOf judges l at now (see clockNote).
func viewOf(l *coordinationv1.Lease, now time.Time) leaseView {
	s := lease.NewSnapshot(l)
	v := leaseView{Namespace: l.Namespace, Name: l.Name, Record: s.Record, Token: s.Token, ForeignEdit: s.ForeignEdit, State: stateReleased}
	if !l.CreationTimestamp.IsZero() {
		v.Age, v.Created = now.Sub(l.CreationTimestamp.Time), true
	}
	rec := s.Record
	if !rec.Held() {
		return v
	}
	v.State = stateHeld
	if !rec.RenewTime.IsZero() {
		v.HasExpiry = true
		v.ExpiresIn = rec.RenewTime.Add(rec.LeaseDuration).Sub(now)
		if v.ExpiresIn < 0 {
			v.State = stateExpired
		}
	}
	return v
}

// expiresIn is the EXPIRES IN column: "12s", "-3m" once expired (that long
// ago), <none> when released, <unknown> without a renewTime.
func (v leaseView) expiresIn() string {
	switch {
	case v.State == stateReleased:
		return noValue
	case !v.HasExpiry:
		return unknownValue
	case v.ExpiresIn < 0:
		return "-" + duration.HumanDuration(-v.ExpiresIn)
	default:
		return duration.HumanDuration(v.ExpiresIn)
	}
}

// heldFor is the HELD FOR column: time since acquireTime while held.
func (v leaseView) heldFor(now time.Time) string {
	switch {
	case v.State != stateHeld:
		return noValue
	case v.ForeignEdit || v.Record.AcquireTime.IsZero():
		return unknownValue
	default:
		return duration.HumanDuration(now.Sub(v.Record.AcquireTime))
	}
}

// token is the fencing token of the current term; <unknown> while held
// without one that can be believed: a holder that is not a Leasehold
// process, or a holder named by a foreign edit (never credited with the
// previous holder's token).
func (v leaseView) token() string {
	switch {
	case !v.Token.IsZero():
		return v.Token.String()
	case v.Record.Held():
		return unknownValue
	default:
		return noValue
	}
}

// age is the AGE column, as kubectl shows it.
func (v leaseView) age() string {
	if !v.Created {
		return unknownValue
	}
	return duration.HumanDuration(v.Age)
}

func (v leaseView) preferred() string { return orNone(v.Record.PreferredHolder) }

func (v leaseView) leaseDuration() string {
	if v.Record.LeaseDuration == 0 {
		return noValue
	}
	return shortDuration(v.Record.LeaseDuration)
}

// shortDuration is d.String() without zero units at the end: 15s, 1m30s, 1h.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return noValue
	}
	return s
}

// tableOptions choose the columns of a lease table.
type tableOptions struct {
	withNamespace bool     // NAMESPACE first (-A)
	wide          bool     // TOKEN, PREFERRED, DURATION after AGE (-o wide)
	showLabels    bool     // LABELS last (--show-labels)
	columnLabels  []string // a column per label key (-L)
	noHeaders     bool     // no header line (--no-headers)
}

// leaseColumns are the columns of a lease table; priority 1 are shown only
// with -o wide.
var leaseColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "name of the Lease"},
	{Name: "Holder", Type: "string", Description: "spec.holderIdentity"},
	{Name: "State", Type: "string", Description: "held, expired (by this machine's clock) or released"},
	{Name: "Expires In", Type: "string", Description: "renewTime + leaseDurationSeconds - now; negative once expired"},
	{Name: "Held For", Type: "string", Description: "time since the holder acquired the lease"},
	{Name: "Transitions", Type: "integer", Description: "spec.leaseTransitions"},
	{Name: "Age", Type: "string", Description: "time since the Lease was created"},
	{Name: "Token", Type: "string", Priority: 1, Description: "fencing token of the current term"},
	{Name: "Preferred", Type: "string", Priority: 1, Description: "preferred holder of a requested handoff"},
	{Name: "Duration", Type: "string", Priority: 1, Description: "spec.leaseDurationSeconds"},
}

// newTablePrinter returns cli-runtime's table printer (kubectl's) set up
// for opt. Reused across calls (get -w), it prints the header only once.
func newTablePrinter(opt tableOptions) printers.ResourcePrinter {
	return printers.NewTablePrinter(printers.PrintOptions{
		WithNamespace: opt.withNamespace,
		Wide:          opt.wide,
		ShowLabels:    opt.showLabels,
		ColumnLabels:  opt.columnLabels,
		NoHeaders:     opt.noHeaders,
	})
}

// leaseTable makes the rows of leases judged at now, sorted by namespace
// and name; each row carries its Lease, for the namespace and label columns.
func leaseTable(leases []coordinationv1.Lease, now time.Time) *metav1.Table {
	sorted := make([]*coordinationv1.Lease, len(leases))
	for i := range leases {
		sorted[i] = &leases[i]
	}
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Namespace != sorted[j].Namespace {
			return sorted[i].Namespace < sorted[j].Namespace
		}
		return sorted[i].Name < sorted[j].Name
	})
	t := &metav1.Table{ColumnDefinitions: leaseColumns}
	for _, l := range sorted {
		v := viewOf(l, now)
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells: []any{v.Name, orNone(v.Record.Holder), v.State, v.expiresIn(), v.heldFor(now),
				v.Record.Transitions, v.age(), v.token(), v.preferred(), v.leaseDuration()},
			Object: runtime.RawExtension{Object: l},
		})
	}
	return t
}

// printLeaseTable prints leases as kubectl prints tables: a header, then one
// row per lease sorted by namespace and name, columns aligned.
func printLeaseTable(w io.Writer, leases []coordinationv1.Lease, now time.Time, opt tableOptions) error {
	return newTablePrinter(opt).PrintObj(leaseTable(leases, now), w)
}

// formatRecordTime shows a record time in UTC with the microseconds the wire
// carries, and how long before now it was.
func formatRecordTime(t, now time.Time) string {
	if t.IsZero() {
		return noValue
	}
	ago := now.Sub(t)
	rel := duration.HumanDuration(ago) + " ago"
	if ago < 0 {
		rel = "in " + duration.HumanDuration(-ago)
	}
	return fmt.Sprintf("%s (%s)", t.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), rel)
}

// watchStamp is the timestamp that starts each line of watch.
func watchStamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// addNowFlag adds the hidden --now flag, which fixes the time that states
// and ages are judged at (RFC 3339), so that tests get stable output.
func addNowFlag(fs *pflag.FlagSet, now *func() time.Time) {
	fs.Var(&nowValue{now: now}, "now", "judge states and ages at this time (RFC 3339; for tests)")
	_ = fs.MarkHidden("now")
}

type nowValue struct {
	now *func() time.Time
	set string
}

func (n *nowValue) String() string { return n.set }
func (n *nowValue) Type() string   { return "time" }
func (n *nowValue) Set(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("want RFC 3339, like 2030-01-02T15:04:05Z: %w", err)
	}
	n.set = s
	*n.now = func() time.Time { return t }
	return nil
}

// listError explains a failed list of Leases (or Events): which verb RBAC
// must allow and where. Single-Lease requests go through lease.Client, whose
// errors already say so.
func listError(resource, group, namespace string, err error) error {
	where := fmt.Sprintf("in namespace %q", namespace)
	if namespace == "" {
		where = "in all namespaces (a ClusterRole)"
	}
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("forbidden: RBAC must allow verb \"list\" on resource %q (API group %q) %s: %w", resource, group, where, err)
	}
	return fmt.Errorf("list %s %s: %w", resource, where, err)
}

// leaseError makes a lease.Client error read well on the command line; a
// missing Lease names namespace and name.
func leaseError(namespace, name string, err error) error {
	if errors.Is(err, lease.ErrNotFound) {
		return &explained{msg: fmt.Sprintf("lease %q not found in namespace %q", name, namespace), err: err}
	}
	return err
}

// explained is an error shown in words of its own, still matching the error
// it explains.
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// cliName is how the user invoked us, for examples in help: "kubectl lease"
// when run as the kubectl plugin, else "leasehold" (as newRoot decides).
func cliName() string {
	if strings.HasPrefix(filepath.Base(os.Args[0]), "kubectl-lease") {
		return "kubectl lease"
	}
	return "leasehold"
}

// asFailure gives a command's runtime failure the exit code for errors, so that
// no wording of it is mistaken for a usage error.
func asFailure(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return withCode(ExitError, err)
}
