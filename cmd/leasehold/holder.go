package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/leasehold/leasehold/lease"
)

// ExitNotHeld is the status of `holder` when the Lease is not held.
const ExitNotHeld = 3

// holderCmd is `leasehold holder NAME`: only the holder's identity, for
// scripts (as `etcdctl elect -l` prints the leader).
type holderCmd struct {
	*app
	now func() time.Time
}

func newHolderCmd(a *app) *cobra.Command {
	h := &holderCmd{app: a, now: time.Now}
	cmd := &cobra.Command{
		Use:   "holder NAME",
		Short: "Print only the current holder of a Lease, for scripts",
		Long: `holder prints the identity of the current holder of the Lease NAME (or
lease/NAME) on a line of its own, and nothing else on stdout. When the lease
is not held it prints nothing there, says why on stderr, and exits with 3.

A lease is held while it names a holder whose last renewal has not expired:
renewTime + leaseDurationSeconds has not passed on this machine's clock (a
single read has no watch history; see get --help on clock skew).

Exit status:
  0  held: the holder's identity is printed
  1  an error: the Lease does not exist, the API could not be reached, RBAC
     denied the request (the message names the verb)
  2  usage: bad flags or arguments
  3  not held: released, never held, or expired`,
		Example: fmt.Sprintf(`  # Who leads my-app?
  %[1]s holder my-app

  # Act on the answer in a script
  if leader=$(%[1]s holder my-app -n prod); then
    echo "$leader leads"
  else
    echo "no leader (status $?)"
  fi`, cliName()),
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeLeaseNames(a, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return h.run(cmd.Context(), args[0])
		},
	}
	addNowFlag(cmd.Flags(), &h.now)
	return cmd
}

func (h *holderCmd) run(ctx context.Context, arg string) error {
	names, err := leaseArgs([]string{arg})
	if err != nil {
		return withCode(ExitUsage, err)
	}
	name := names[0]
	cs, err := h.clientset()
	if err != nil {
		return asFailure(err)
	}
	ns, err := h.namespace()
	if err != nil {
		return asFailure(err)
	}
	c, err := lease.NewClient(cs.CoordinationV1(), ns, name)
	if err != nil {
		return asFailure(err)
	}
	s, err := c.Get(ctx)
	if err != nil {
		return asFailure(leaseError(ns, name, err))
	}
	v := viewOf(s.Object(), h.now())
	switch v.State {
	case stateHeld:
		_, err := fmt.Fprintln(h.io.Out, v.Record.Holder)
		return asFailure(err)
	case stateExpired:
		return withCode(ExitNotHeld, fmt.Errorf("lease %s/%s is not held: %s has not renewed it for %s past its lease duration (by this machine's clock)",
			ns, name, v.Record.Holder, duration.HumanDuration(-v.ExpiresIn)))
	default:
		return withCode(ExitNotHeld, errors.New("lease "+ns+"/"+name+" is not held (released, or never held)"))
	}
}
