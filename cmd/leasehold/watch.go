package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/lease"
)

// watchCmd is `leasehold watch NAME`: one line per change of a Lease.
type watchCmd struct {
	*app
	now      func() time.Time
	renewals bool
}

func newWatchCmd(a *app) *cobra.Command {
	w := &watchCmd{app: a, now: time.Now}
	cmd := &cobra.Command{
		Use:   "watch NAME",
		Short: "Print each change of a Lease's holder as it happens",
		Long: `watch follows a Lease (NAME or lease/NAME: a read, then a watch) and prints
one timestamped line per change: acquired, released, taken over, handoff
requested, created, deleted; with --renewals also every renewal. It runs until
interrupted (Ctrl-C), then exits with status 0. (get -w follows many Leases,
a table row per change.)

Each term's fencing token is shown when a Leasehold holder recorded it, else
"token unknown": a client-go holder, or a holder named by someone who edited
holderIdentity without acquiring (kubectl apply, for example). Such an edit is
reported as one, never as a takeover: the record's acquire and renew times
are still the previous holder's.

"expired" lines are this watcher's own view, judged as Leasehold's
candidates judge it: the holder has not renewed for the lease duration,
counted from when this watcher saw the record change (never from the
timestamps in the record, which come from the holder's clock). Changes that
follow each other faster than the watch delivers them may show as one.`,
		Example: fmt.Sprintf(`  %[1]s watch my-app
  %[1]s watch my-app --renewals -n kube-system`, cliName()),
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeLeaseNames(a, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := leaseArgs(args)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			return asFailure(w.run(cmd.Context(), names[0]))
		},
	}
	cmd.Flags().BoolVar(&w.renewals, "renewals", false, "also print every renewal by the holder")
	return cmd
}

func (w *watchCmd) run(ctx context.Context, name string) error {
	cs, err := w.clientset()
	if err != nil {
		return err
	}
	ns, err := w.namespace()
	if err != nil {
		return err
	}
	obs, err := election.NewWatcher(cs.CoordinationV1(), ns, name, time.Second)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	ended := make(chan error, 1)
	wg.Go(func() { ended <- obs.Run(runCtx) })

	var (
		prev     election.LeaseState // last state reported on
		expired  bool                // the current term was reported expired
		lastErr  string
		timer    *time.Timer
		deadline <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		st, changed := obs.State()
		if !st.Synced && st.Err != nil {
			// The first read failed: say so rather than retry unseen.
			return fmt.Errorf("watch lease %s/%s: %w", ns, name, st.Err)
		}
		if st.Synced && (!prev.Synced || !st.ObservedAt.Equal(prev.ObservedAt) || st.Exists() != prev.Exists()) {
			w.report(ns, name, prev, st, expired)
			expired = false
			prev = st
			if timer != nil {
				timer.Stop()
			}
			deadline = nil
			if st.Holder() != "" && st.Lease.Record.LeaseDuration > 0 {
				timer = time.NewTimer(time.Until(st.ExpiresAt()))
				deadline = timer.C
			}
		}
		if msg := errString(st.Err); msg != lastErr {
			if msg != "" {
				fmt.Fprintf(w.io.Err, "%s  watch failing, retrying: %s\n", watchStamp(w.now()), msg)
			} else if lastErr != "" {
				fmt.Fprintf(w.io.Err, "%s  watch resumed\n", watchStamp(w.now()))
			}
			lastErr = msg
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-ended:
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("watch lease %s/%s: %w", ns, name, err)
		case <-deadline:
			deadline = nil
			expired = true
			w.say("expired in this watcher's view: %s has not renewed for %v", prev.Holder(), prev.Lease.Record.LeaseDuration)
		case <-changed:
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (w *watchCmd) say(format string, args ...any) {
	fmt.Fprintf(w.io.Out, "%s  %s\n", watchStamp(w.now()), fmt.Sprintf(format, args...))
}

// report prints what changed from prev to cur; wasExpired says whether prev's
// term had expired in this watcher's view.
func (w *watchCmd) report(ns, name string, prev, cur election.LeaseState, wasExpired bool) {
	if !prev.Synced {
		if !cur.Exists() {
			w.say("lease %s/%s does not exist (yet); waiting for it", ns, name)
			return
		}
		w.say("lease %s/%s: %s", ns, name, summary(cur.Lease))
		return
	}
	switch {
	case !cur.Exists():
		w.say("deleted")
		return
	case !prev.Exists():
		w.say("created: %s", summary(cur.Lease))
		return
	case cur.Lease.UID != prev.Lease.UID:
		w.say("deleted and created again: %s", summary(cur.Lease))
		return
	}
	p, c := prev.Lease.Record, cur.Lease.Record
	switch {
	case c.Holder != "" && c.Holder != p.Holder && cur.Lease.ForeignEdit:
		was := "the lease was released"
		if p.Holder != "" {
			was = "was " + p.Holder
		}
		w.say("%s named as holder without acquiring (holderIdentity edited, by kubectl apply for example; %s); the acquire and renew times are the previous holder's%s",
			c.Holder, was, termInfo(cur.Lease))
	case p.Holder == "" && c.Holder != "":
		w.say("acquired by %s%s", c.Holder, termInfo(cur.Lease))
	case p.Holder != "" && c.Holder == "":
		w.say("released by %s", p.Holder)
	case p.Holder != c.Holder && wasExpired:
		w.say("%s took over from %s, which had expired%s", c.Holder, p.Holder, termInfo(cur.Lease))
	case p.Holder != c.Holder:
		w.say("%s took over from %s%s", c.Holder, p.Holder, termInfo(cur.Lease))
	case c.Holder != "" && c.Transitions != p.Transitions:
		w.say("acquired again by %s%s", c.Holder, termInfo(cur.Lease))
	case c.Holder != "" && wasExpired:
		w.say("renewed by %s, after it had expired in this watcher's view", c.Holder)
	case c.Holder != "" && !c.RenewTime.Equal(p.RenewTime) && w.renewals:
		w.say("renewed by %s (renewTime %s)", c.Holder, c.RenewTime.Format(time.RFC3339Nano))
	}
	if c.PreferredHolder != "" && c.PreferredHolder != p.PreferredHolder && c.PreferredHolder != c.Holder {
		w.say("handoff to %s requested", c.PreferredHolder)
	}
}

// summary describes a lease in a few words.
func summary(s *lease.Snapshot) string {
	r := s.Record
	if !r.Held() {
		return fmt.Sprintf("released (transitions %d)", r.Transitions)
	}
	out := fmt.Sprintf("held by %s%s", r.Holder, termInfo(s, fmt.Sprintf("lease duration %v", r.LeaseDuration)))
	if r.PreferredHolder != "" && r.PreferredHolder != r.Holder {
		out += ", handoff to " + r.PreferredHolder + " requested"
	}
	if s.ForeignEdit {
		out += "; named as holder without acquiring (holderIdentity edited): the acquire and renew times are the previous holder's"
	}
	return out
}

// termInfo is " (token T, transitions N, more...)" for the current term;
// "token unknown" when the holder recorded none that can be believed.
func termInfo(s *lease.Snapshot, more ...string) string {
	parts := []string{fmt.Sprintf("transitions %d", s.Record.Transitions)}
	switch {
	case !s.Token.IsZero():
		parts = append([]string{fmt.Sprintf("token %v", s.Token)}, parts...)
	case s.Record.Held():
		parts = append([]string{"token unknown"}, parts...)
	}
	return " (" + strings.Join(append(parts, more...), ", ") + ")"
}
