package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/lease"
)

// handoffCmd is `leasehold handoff NAME --to ID`: a planned handoff.
type handoffCmd struct {
	*app
	to   string
	wait time.Duration
}

func newHandoffCmd(a *app) *cobra.Command {
	h := &handoffCmd{app: a}
	cmd := &cobra.Command{
		Use:   "handoff NAME --to ID",
		Short: "Ask the holder of a Lease to hand it to another candidate",
		Long: `handoff names ID the preferred holder of the Lease (spec.preferredHolder, and
the leasehold.io/preferred-holder annotation for apiservers that drop the
field). A Leasehold holder that sees it stops its work, releases, and the
candidate ID takes over at once; other candidates hold back. ID must be a
running candidate for the Lease.

With --wait (default 30s) handoff watches the Lease until ID holds it and
reports how long that took; it fails if another candidate takes over instead,
if the holder keeps the Lease into a new term, or when --wait passes.
--wait 0 only writes the request.`,
		Example: fmt.Sprintf(`  # Move leadership to the replica in pod web-2 and wait for it
  %[1]s handoff my-app --to web-2

  # Only ask, do not wait
  %[1]s handoff my-app --to web-2 --wait 0`, cliName()),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return asFailure(h.run(cmd.Context(), args[0]))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&h.to, "to", "", "identity of the candidate to hand the Lease to (required)")
	fs.DurationVar(&h.wait, "wait", 30*time.Second, "how long to wait for ID to take over; 0: do not wait")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func (h *handoffCmd) run(ctx context.Context, name string) error {
	errs := []error{checkLeaseName("NAME", name), nonNegative("wait", h.wait)}
	if h.to == "" {
		errs = append(errs, errors.New("--to must name a candidate identity"))
	}
	if err := errors.Join(errs...); err != nil {
		return withCode(ExitUsage, fmt.Errorf("handoff: %w", err))
	}
	cs, err := h.clientset()
	if err != nil {
		return err
	}
	ns, err := h.namespace()
	if err != nil {
		return err
	}
	c, err := lease.NewClient(cs.CoordinationV1(), ns, name)
	if err != nil {
		return err
	}
	began := time.Now()
	from, err := election.RequestHandoff(ctx, c, h.to)
	if err != nil {
		return apiMessage(leaseError(ns, name, err))
	}
	if from.Record.Holder == h.to {
		fmt.Fprintf(h.io.Out, "%s already holds lease %s/%s\n", h.to, ns, name)
		return nil
	}
	prev := from.Record.Holder
	if h.wait <= 0 {
		if prev == "" {
			fmt.Fprintf(h.io.Out, "named %s the preferred holder of lease %s/%s, which nobody holds\n", h.to, ns, name)
		} else {
			fmt.Fprintf(h.io.Out, "asked %s to hand lease %s/%s to %s\n", prev, ns, name, h.to)
		}
		return nil
	}

	obs, err := election.NewWatcher(cs.CoordinationV1(), ns, name, time.Second)
	if err != nil {
		return err
	}
	obs.Offer(from)
	wctx, cancel := context.WithTimeout(ctx, h.wait)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	ended := make(chan error, 1)
	wg.Go(func() { ended <- obs.Run(wctx) })
	for {
		st, changed := obs.State()
		if l := st.Lease; l != nil {
			switch r := l.Record; {
			case r.Holder == h.to:
				fmt.Fprintf(h.io.Out, "handed lease %s/%s from %s to %s in %v\n", ns, name, orNone(prev), h.to, time.Since(began).Round(time.Millisecond))
				return nil
			case r.Holder != "" && r.Holder != prev:
				return fmt.Errorf("handoff of lease %s/%s to %s: %s took over instead", ns, name, h.to, r.Holder)
			case r.Holder != "" && r.Transitions != from.Record.Transitions:
				return fmt.Errorf("handoff of lease %s/%s to %s: %s acquired it again and the request lapsed", ns, name, h.to, r.Holder)
			}
		} else if st.Synced {
			return fmt.Errorf("handoff of lease %s/%s to %s: the Lease was deleted", ns, name, h.to)
		}
		select {
		case err := <-ended:
			if wctx.Err() == nil {
				return fmt.Errorf("handoff of lease %s/%s to %s: watch: %w", ns, name, h.to, err)
			}
		case <-wctx.Done():
		case <-changed:
			continue
		}
		if ctx.Err() != nil {
			return fmt.Errorf("handoff of lease %s/%s to %s: interrupted after %v; the request stays on the Lease", ns, name, h.to, time.Since(began).Round(time.Millisecond))
		}
		holder := "nobody holds it"
		if who := st.Holder(); who != "" {
			holder = who + " still holds it"
		}
		return fmt.Errorf("handoff of lease %s/%s to %s: not done after %v, %s (is a candidate with identity %s running?)", ns, name, h.to, h.wait, holder, h.to)
	}
}
