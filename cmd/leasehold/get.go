package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/shard"
)

// getCmd is `leasehold get [NAME...]` and `leasehold list`: Leases as a
// table, or printed by any of kubectl's output formats.
type getCmd struct {
	*app
	now           func() time.Time
	allNamespaces bool
	selector      string
	print         *genericclioptions.PrintFlags
	showLabels    bool
	labelColumns  []string
	noHeaders     bool
	watch         bool
	watchEvents   bool
}

const getExamples = `  # Leases in the current namespace, and whether they are held
  %[1]s get

  # Two Leases, with their fencing tokens, preferred holders and durations
  %[1]s get my-app lease/my-cron -o wide

  # Leases in every namespace that carry a label, and their labels
  %[1]s get -A -l app.kubernetes.io/part-of=my-app --show-labels

  # A line for each change of the Leases in this namespace, until Ctrl-C
  %[1]s get -w

  # The holder of each Lease, with kubectl's jsonpath or custom columns
  %[1]s get -o jsonpath='{.items[*].spec.holderIdentity}'
  %[1]s get -o custom-columns=NAME:.metadata.name,BY:spec.holderIdentity

  # The Lease object itself, as kubectl would print it
  %[1]s get my-app -o yaml

  # Shard groups: members and the shards each owns
  %[1]s get shardgroups
  %[1]s get shardgroup/workers`

// outputHelp is the help of -o.
const outputHelp = "output format: wide, json, yaml, kyaml, name, jsonpath=TEMPLATE, " +
	"jsonpath-as-json=TEMPLATE, jsonpath-file=FILE, go-template=TEMPLATE, " +
	"go-template-file=FILE, custom-columns=SPEC or custom-columns-file=FILE " +
	"(default: a table)"

func newGetCmd(a *app) *cobra.Command { return newGetCommand(a, false) }

func newListCmd(a *app) *cobra.Command { return newGetCommand(a, true) }

func newGetCommand(a *app, list bool) *cobra.Command {
	g := &getCmd{app: a, now: time.Now, print: genericclioptions.NewPrintFlags("").WithTypeSetter(scheme.Scheme)}
	cmd := &cobra.Command{
		Use:   "get [NAME...]",
		Short: "Show Leases: holder, state, expiry, transitions",
		Long: `get shows Leases by name (NAME or lease/NAME), or all Leases in the namespace
(-A: in all namespaces; -l: those with matching labels), as a table: NAME,
HOLDER, STATE (held, expired or released), EXPIRES IN (negative: expired that
long ago), HELD FOR (since the holder acquired it), TRANSITIONS and AGE. -o
wide adds the holder's fencing TOKEN, the PREFERRED holder of a requested
handoff and the lease DURATION. -o json, yaml, name, jsonpath, go-template and
custom-columns print the Lease objects as kubectl does. -w prints the table,
then a line for each change until interrupted.

The table of all Leases is followed by one of the shard groups (leasehold run
--shards) whose member Leases it lists: SHARD GROUP, SHARDS, MEMBERS (live of
all), OWNED (shards per member) and UNOWNED. get shardgroups (or
shardgroup/NAME...) prints only that table.

TOKEN is the token recorded by a Leasehold holder, <unknown> when the holder
recorded none (a client-go holder) or was named by a foreign edit (someone
changed holderIdentity, with kubectl apply for example, without acquiring:
its HELD FOR is then <unknown> too, since the record's times are the previous
holder's).

` + clockNote,
		Example:           fmt.Sprintf(getExamples, cliName()),
		ValidArgsFunction: completeLeaseNames(a, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd.Context(), args)
		},
	}
	if list {
		cmd.Use = "list"
		cmd.Short = "List Leases (get without a name)"
		cmd.Long = "list is get without a name: every Lease in the namespace, or with -A in all\nnamespaces.\n\n" + clockNote
		cmd.Example = fmt.Sprintf(`  %[1]s list
  %[1]s list -A -o wide`, cliName())
		cmd.Args = cobra.NoArgs
		cmd.ValidArgsFunction = cobra.NoFileCompletions
	}
	fs := cmd.Flags()
	fs.BoolVarP(&g.allNamespaces, "all-namespaces", "A", false, "list Leases in all namespaces")
	fs.StringVarP(&g.selector, "selector", "l", "", "label selector to filter on, as kubectl (e.g. -l app=web,tier!=db)")
	fs.StringVarP(g.print.OutputFormat, "output", "o", "", outputHelp)
	g.print.OutputFlagSpecified = func() bool { return cmd.Flag("output").Changed }
	g.print.JSONYamlPrintFlags.AddFlags(cmd)
	g.print.TemplatePrinterFlags.AddFlags(cmd)
	fs.Lookup("template").Usage = "template for -o go-template or jsonpath (also a file's path for " +
		"go-template-file and jsonpath-file); Go templates: https://golang.org/pkg/text/template"
	fs.BoolVar(&g.showLabels, "show-labels", false, "show all labels of each Lease as the last column")
	fs.StringSliceVarP(&g.labelColumns, "label-columns", "L", nil, "a column for the value of each of these label keys")
	fs.BoolVar(&g.noHeaders, "no-headers", false, "print tables and custom columns without the header line")
	fs.BoolVarP(&g.watch, "watch", "w", false, "after the Leases, print a line for each change until interrupted")
	fs.BoolVar(&g.watchEvents, "output-watch-events", false, "with -w, say what each change was (ADDED, MODIFIED, DELETED)")
	_ = cmd.RegisterFlagCompletionFunc("output", completeOutput(g.print))
	addNowFlag(fs, &g.now)
	return cmd
}

// table reports whether the output is a lease table.
func (g *getCmd) table() bool { o := *g.print.OutputFormat; return o == "" || o == "wide" }

// printer returns the printer for -o (nil for a table); an unknown format
// is a usage error.
func (g *getCmd) printer() (printers.ResourcePrinter, error) {
	out := *g.print.OutputFormat
	if g.table() && (g.print.TemplatePrinterFlags.TemplateArgument == nil || *g.print.TemplatePrinterFlags.TemplateArgument == "") {
		return nil, nil
	}
	if p, ok, err := customColumnsPrinter(out, g.noHeaders); ok {
		return p, err
	}
	p, err := g.print.ToPrinter()
	if genericclioptions.IsNoCompatiblePrinterError(err) {
		return nil, fmt.Errorf("unknown output format %q: want %s", out, strings.TrimPrefix(outputHelp, "output format: "))
	}
	return p, err
}

func (g *getCmd) run(ctx context.Context, args []string) error {
	p, err := g.printer()
	if err != nil {
		return withCode(ExitUsage, err)
	}
	groups, isGroups, err := groupArgs(args)
	if err != nil {
		return withCode(ExitUsage, err)
	}
	if isGroups {
		return g.runGroups(ctx, groups)
	}
	names, err := leaseArgs(args)
	if err != nil {
		return withCode(ExitUsage, err)
	}
	switch {
	case len(names) > 0 && g.allNamespaces:
		return withCode(ExitUsage, errors.New("a Lease cannot be read by name across all namespaces: drop -A or the name"))
	case len(names) > 0 && g.selector != "":
		return withCode(ExitUsage, errors.New("give names or a selector (-l), not both"))
	case len(names) > 1 && g.watch:
		return withCode(ExitUsage, errors.New("-w watches one Lease or a list of Leases, not several names: drop -w or all names but one"))
	case g.watchEvents && !g.watch:
		return withCode(ExitUsage, errors.New("--output-watch-events needs -w"))
	}
	cs, ns, err := g.target()
	if err != nil {
		return err
	}

	items, rv, readErr := g.read(ctx, cs, ns, names)
	if readErr != nil && (len(items) == 0 || g.watch) {
		return asFailure(readErr)
	}
	tp := newTablePrinter(tableOptions{withNamespace: g.allNamespaces, wide: *g.print.OutputFormat == "wide",
		showLabels: g.showLabels, columnLabels: g.labelColumns, noHeaders: g.noHeaders})
	if p == nil && len(items) == 0 {
		g.sayNoneFound(ns)
	} else if err := g.printItems(p, tp, items, names); err != nil {
		return asFailure(err)
	}
	if groups := groupsOf(items, g.now()); p == nil && !g.watch && len(names) == 0 && len(groups) > 0 {
		// The shard groups these Leases are members of, as kubectl get
		// prints a second kind: after a blank line.
		fmt.Fprintln(g.io.Out)
		if err := printGroupTable(g.io.Out, groups, g.allNamespaces, g.noHeaders); err != nil {
			return asFailure(err)
		}
	}
	if !g.watch {
		return asFailure(readErr) // nil, or the names that were not found
	}
	return asFailure(g.watchChanges(ctx, cs, ns, names, rv, p, tp))
}

// read gets the named Leases (all of them, reporting those it cannot get),
// or lists them; rv is the version a watch of them starts after.
// target returns the clientset and the namespace to read (all of them with
// -A), or the failure to report.
func (g *getCmd) target() (kubernetes.Interface, string, error) {
	cs, err := g.clientset()
	if err != nil {
		return nil, "", asFailure(err)
	}
	ns, err := g.namespace()
	if err != nil {
		return nil, "", asFailure(err)
	}
	if g.allNamespaces {
		ns = metav1.NamespaceAll
	}
	return cs, ns, nil
}

func (g *getCmd) read(ctx context.Context, cs kubernetes.Interface, ns string, names []string) (items []coordinationv1.Lease, rv string, err error) {
	if len(names) == 0 {
		list, err := cs.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: g.selector})
		if err != nil {
			return nil, "", listError("leases", coordinationv1.GroupName, ns, err)
		}
		return list.Items, list.ResourceVersion, nil
	}
	var errs []error
	for _, name := range names {
		c, err := lease.NewClient(cs.CoordinationV1(), ns, name)
		if err != nil {
			return nil, "", err
		}
		s, err := c.Get(ctx)
		if err != nil {
			errs = append(errs, leaseError(ns, name, err))
			continue
		}
		items = append(items, *s.Object())
		rv = s.ResourceVersion
	}
	return items, rv, errors.Join(errs...)
}

// sayNoneFound says on stderr, as kubectl does, that a table would be empty.
func (g *getCmd) sayNoneFound(ns string) {
	if ns == metav1.NamespaceAll {
		fmt.Fprintln(g.io.Err, "No leases found.")
	} else {
		fmt.Fprintf(g.io.Err, "No leases found in namespace %q.\n", ns)
	}
}

// printItems prints what was read: a table, or with printer p the Lease when
// one name was given (each Lease with -o name), else a LeaseList (its items
// [] when empty, never null). With --output-watch-events each Lease is an
// ADDED event, as kubectl prints them.
func (g *getCmd) printItems(p, tp printers.ResourcePrinter, items []coordinationv1.Lease, names []string) error {
	out := g.io.Out
	switch {
	case g.watchEvents && p == nil:
		return tp.PrintObj(&metav1.WatchEvent{Type: string(watch.Added), Object: runtime.RawExtension{Object: leaseTable(items, g.now())}}, out)
	case g.watchEvents:
		for i := range items {
			if err := g.printChange(out, p, tp, string(watch.Added), &items[i]); err != nil {
				return err
			}
		}
		return nil
	case p == nil:
		return tp.PrintObj(leaseTable(items, g.now()), out)
	}
	if len(names) == 1 || *g.print.OutputFormat == "name" {
		for i := range items { // the name printer takes no lists
			if err := p.PrintObj(typedLease(&items[i]), out); err != nil {
				return err
			}
		}
		return nil
	}
	list := &coordinationv1.LeaseList{Items: make([]coordinationv1.Lease, 0, len(items))}
	for i := range items {
		list.Items = append(list.Items, *typedLease(&items[i]))
	}
	list.SetGroupVersionKind(coordinationv1.SchemeGroupVersion.WithKind("LeaseList"))
	return p.PrintObj(list, out)
}

// printChange prints one watched change: a table row, or the Lease (in a
// WatchEvent with --output-watch-events).
func (g *getCmd) printChange(out io.Writer, p, tp printers.ResourcePrinter, typ string, l *coordinationv1.Lease) error {
	var obj runtime.Object = typedLease(l)
	if !g.print.JSONYamlPrintFlags.ShowManagedFields {
		l.ManagedFields = nil // the printer drops them from a Lease, not from a WatchEvent
	}
	if p == nil {
		p, obj = tp, leaseTable([]coordinationv1.Lease{*l}, g.now())
	}
	if g.watchEvents {
		obj = &metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Object: obj}}
	}
	return p.PrintObj(obj, out)
}

// typedLease sets l's apiVersion and kind, which typed clients leave empty.
func typedLease(l *coordinationv1.Lease) *coordinationv1.Lease {
	l.SetGroupVersionKind(coordinationv1.SchemeGroupVersion.WithKind("Lease"))
	return l
}

// leaseArgs returns the Lease names that arguments give, as kubectl takes
// them: NAME, or TYPE/NAME where TYPE names Leases (lease, leases,
// lease.coordination.k8s.io, ...).
func leaseArgs(args []string) ([]string, error) {
	names := make([]string, 0, len(args))
	for _, arg := range args {
		name := arg
		if typ, n, ok := strings.Cut(arg, "/"); ok {
			switch strings.ToLower(typ) {
			case "lease", "leases", "lease.coordination.k8s.io", "leases.coordination.k8s.io":
				name = n
			default:
				return nil, fmt.Errorf("%q: only Leases can be named (NAME or lease/NAME), not %q", arg, typ)
			}
		}
		if name == "" {
			return nil, fmt.Errorf("%q: a Lease name must not be empty", arg)
		}
		names = append(names, name)
	}
	return names, nil
}

// runGroups prints shard groups (every group in the namespace without
// names): a line each, with their members and the shards each owns.
func (g *getCmd) runGroups(ctx context.Context, names []string) error {
	switch {
	case !g.table():
		return withCode(ExitUsage, errors.New("shard groups print only as a table: drop -o, or get their Leases (-l "+shard.GroupLabel+"=NAME)"))
	case g.watch:
		return withCode(ExitUsage, errors.New("-w watches Leases, not shard groups: watch a group's Leases with -w -l "+shard.GroupLabel+"=NAME"))
	case g.selector != "":
		return withCode(ExitUsage, errors.New("give shard group names or a selector (-l), not both"))
	case len(names) > 0 && g.allNamespaces:
		return withCode(ExitUsage, errors.New("a shard group cannot be read by name across all namespaces: drop -A or the name"))
	}
	cs, ns, err := g.target()
	if err != nil {
		return err
	}
	groups, readErr := readGroups(ctx, cs, ns, names, g.now())
	if len(groups) == 0 && readErr == nil {
		if ns == metav1.NamespaceAll {
			fmt.Fprintln(g.io.Err, "No shard groups found.")
		} else {
			fmt.Fprintf(g.io.Err, "No shard groups found in namespace %q.\n", ns)
		}
		return nil
	}
	if len(groups) > 0 {
		if err := printGroupTable(g.io.Out, groups, g.allNamespaces, g.noHeaders); err != nil {
			return asFailure(err)
		}
	}
	return asFailure(readErr)
}
