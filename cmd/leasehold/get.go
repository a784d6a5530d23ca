package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/leasehold/leasehold/lease"
)

// getCmd is `leasehold get [NAME]` and `leasehold list`: Leases as a table,
// or as kubectl prints them with -o json|yaml|name.
type getCmd struct {
	*app
	now           func() time.Time
	allNamespaces bool
	selector      string
	output        string
}

const getExamples = `  # Leases in the current namespace, and whether they are held
  %[1]s get

  # One Lease, with its fencing token, preferred holder and duration
  %[1]s get my-app -o wide

  # Leases in every namespace that carry a label
  %[1]s get -A -l app.kubernetes.io/part-of=my-app

  # The Lease object itself, as kubectl would print it
  %[1]s get my-app -o yaml`

func newGetCmd(a *app) *cobra.Command { return newGetCommand(a, false) }

func newListCmd(a *app) *cobra.Command { return newGetCommand(a, true) }

func newGetCommand(a *app, list bool) *cobra.Command {
	g := &getCmd{app: a, now: time.Now}
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "Show Leases: holder, state, expiry, transitions",
		Long: `get shows one Lease, or all Leases in the namespace (-A: in all namespaces),
as a table: NAME, HOLDER, STATE (held, expired or released), EXPIRES IN
(negative: expired that long ago), HELD FOR (since the holder acquired it) and
TRANSITIONS. -o wide adds the holder's fencing TOKEN (recorded by Leasehold
holders), the PREFERRED holder of a requested handoff and the lease DURATION.
-o json, yaml and name print the Lease objects as kubectl does.

` + clockNote,
		Example: fmt.Sprintf(getExamples, cliName()),
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd.Context(), args)
		},
	}
	if list {
		cmd.Use = "list"
		cmd.Short = "List Leases (get without a name)"
		cmd.Long = "list is get without a name: every Lease in the namespace, or with -A in all namespaces.\n\n" + clockNote
		cmd.Example = fmt.Sprintf(`  %[1]s list
  %[1]s list -A -o wide`, cliName())
		cmd.Args = cobra.NoArgs
	}
	fs := cmd.Flags()
	fs.BoolVarP(&g.allNamespaces, "all-namespaces", "A", false, "list Leases in all namespaces")
	fs.StringVarP(&g.selector, "selector", "l", "", "label selector to filter on, as kubectl (e.g. -l app=web,tier!=db)")
	fs.StringVarP(&g.output, "output", "o", "", "output format: wide, json, yaml or name (default: a table)")
	addNowFlag(fs, &g.now)
	return cmd
}

func (g *getCmd) run(ctx context.Context, args []string) error {
	switch g.output {
	case "", "wide", "json", "yaml", "name":
	default:
		return withCode(ExitUsage, fmt.Errorf("unknown output format %q: want wide, json, yaml or name", g.output))
	}
	if len(args) == 1 && g.allNamespaces {
		return withCode(ExitUsage, errors.New("a Lease cannot be read by name across all namespaces: drop -A or the name"))
	}
	if len(args) == 1 && g.selector != "" {
		return withCode(ExitUsage, errors.New("give a name or a selector (-l), not both"))
	}
	cs, err := g.clientset()
	if err != nil {
		return asFailure(err)
	}
	ns, err := g.namespace()
	if err != nil {
		return asFailure(err)
	}
	if g.allNamespaces {
		ns = metav1.NamespaceAll
	}

	var items []coordinationv1.Lease
	var list *coordinationv1.LeaseList
	if len(args) == 1 {
		if err := checkLeaseName("NAME", args[0]); err != nil {
			return withCode(ExitUsage, err)
		}
		c, err := lease.NewClient(cs.CoordinationV1(), ns, args[0])
		if err != nil {
			return asFailure(err)
		}
		s, err := c.Get(ctx)
		if err != nil {
			return asFailure(leaseError(ns, args[0], err))
		}
		items = []coordinationv1.Lease{*s.Object()}
	} else {
		list, err = cs.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: g.selector})
		if err != nil {
			return asFailure(listError("leases", coordinationv1.GroupName, ns, err))
		}
		items = list.Items
	}

	out := g.io.Out
	switch g.output {
	case "", "wide":
		if len(items) == 0 {
			if ns == metav1.NamespaceAll {
				fmt.Fprintln(g.io.Err, "No leases found.")
			} else {
				fmt.Fprintf(g.io.Err, "No leases found in namespace %q.\n", ns)
			}
			return nil
		}
		return asFailure(printLeaseTable(out, items, g.now(), tableOptions{withNamespace: g.allNamespaces, wide: g.output == "wide"}))
	case "name":
		p := &printers.NamePrinter{}
		for i := range items {
			if err := p.PrintObj(typedLease(&items[i]), out); err != nil {
				return asFailure(err)
			}
		}
		return nil
	}
	var obj runtime.Object
	if list == nil {
		obj = typedLease(&items[0])
	} else {
		for i := range list.Items {
			typedLease(&list.Items[i])
		}
		list.SetGroupVersionKind(coordinationv1.SchemeGroupVersion.WithKind("LeaseList"))
		obj = list
	}
	var p printers.ResourcePrinter = &printers.JSONPrinter{}
	if g.output == "yaml" {
		p = &printers.YAMLPrinter{}
	}
	return asFailure(p.PrintObj(obj, out))
}

// typedLease sets l's apiVersion and kind, which typed clients leave empty,
// and drops managedFields as kubectl does by default.
func typedLease(l *coordinationv1.Lease) *coordinationv1.Lease {
	l.SetGroupVersionKind(coordinationv1.SchemeGroupVersion.WithKind("Lease"))
	l.ManagedFields = nil
	return l
}
