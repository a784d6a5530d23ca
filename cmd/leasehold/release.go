package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/lease"
)

// releaseCmd is `leasehold release NAME`: give a Lease up, as its holder
// would.
type releaseCmd struct {
	*app
	now      func() time.Time
	identity string
	force    bool
}

// releaseAttempts bounds the re-reads after conflicting writes.
const releaseAttempts = 5

func newReleaseCmd(a *app) *cobra.Command {
	r := &releaseCmd{app: a, now: time.Now}
	cmd := &cobra.Command{
		Use:   "release NAME",
		Short: "Release a Lease held by --identity (with --force: by anyone)",
		Long: `release gives a Lease up the way its holder does on a clean shutdown, by the
convention client-go uses: no holder, leaseDurationSeconds 1, leaseTransitions
kept. Candidates watching the Lease take it over at once.

Without --force it releases only a Lease held by --identity (default: the
POD_NAME environment variable, else the hostname) and fails naming the holder
otherwise. With --force it releases whoever holds it: a running holder notices
on its next renewal (the write conflicts) and stops leading, but its work may
run until its renew deadline; fencing tokens protect what it writes to.
A Lease that is not held is left as it is.`,
		Example: fmt.Sprintf(`  # Release what this machine (or pod) holds
  %[1]s release my-app

  # Release a lock on behalf of a holder that is gone
  %[1]s release my-lock --identity worker-3

  # Take the Lease away from whoever holds it
  %[1]s release my-app --force`, cliName()),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return asFailure(r.run(cmd.Context(), args[0]))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&r.identity, "identity", "", "release only if held by this identity (default: $POD_NAME, else the hostname)")
	fs.BoolVar(&r.force, "force", false, "release whoever holds the Lease")
	return cmd
}

func (r *releaseCmd) run(ctx context.Context, name string) error {
	if err := checkLeaseName("NAME", name); err != nil {
		return withCode(ExitUsage, fmt.Errorf("release: %w", err))
	}
	id := r.identity
	if id == "" && !r.force {
		var err error
		if id, err = election.DefaultIdentity(); err != nil {
			return fmt.Errorf("no --identity given and no default: %w", err)
		}
	}
	cs, err := r.clientset()
	if err != nil {
		return err
	}
	ns, err := r.namespace()
	if err != nil {
		return err
	}
	c, err := lease.NewClient(cs.CoordinationV1(), ns, name)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		s, err := c.Get(ctx)
		if err != nil {
			return apiMessage(leaseError(ns, name, err))
		}
		rec := s.Record
		if !rec.Held() {
			fmt.Fprintf(r.io.Out, "lease %s/%s is not held; nothing to release\n", ns, name)
			return nil
		}
		if !r.force && rec.Holder != id {
			return fmt.Errorf("lease %s/%s is held by %q, not by %q: pass --identity %s, or --force to release it anyway", ns, name, rec.Holder, id, rec.Holder)
		}
		now := r.now()
		_, err = c.Update(ctx, s, rec.Released(now), 0)
		if errors.Is(err, lease.ErrConflict) && attempt < releaseAttempts {
			continue // someone wrote in between (a renewal): judge again
		}
		if err != nil {
			return apiMessage(err)
		}
		acquired := ""
		if !rec.AcquireTime.IsZero() {
			acquired = ", acquired " + duration.HumanDuration(now.Sub(rec.AcquireTime)) + " ago"
		}
		verb := "released"
		if rec.Holder != id {
			verb = "force-released"
		}
		fmt.Fprintf(r.io.Out, "%s lease %s/%s (held by %s%s); transitions stay %d\n", verb, ns, name, rec.Holder, acquired, rec.Transitions)
		return nil
	}
}
