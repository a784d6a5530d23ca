package election

import (
	"context"
	"errors"
	"fmt"

	"github.com/leasehold/leasehold/lease"
)

// Handoff asks the current leader to hand the lease to the candidate with
// identity to, by naming it the preferred holder (see package doc; `leasehold
// handoff` can do too). The leader stops its work and, still holding the
// lease, offers it to to, which takes it at once; other candidates keep
// waiting. If to does not take it within the leader's HandoffTimeout, the
// leader resumes. While Run is active, Handoff waits until to leads and
// returns an error if the request lapses (the leader resumed, or another
// candidate took over); otherwise it returns once the request is written.
func (e *Elector) Handoff(ctx context.Context, to string) error {
	if to == "" {
		return errors.New("election: Handoff: target identity is empty")
	}
	from, err := RequestHandoff(ctx, e.client, to)
	if err != nil {
		return err
	}
	if from.Record.Holder == to {
		return nil
	}
	e.obs.Offer(from)
	if !e.running.Load() {
		return nil
	}
	for {
		st, changed := e.obs.State()
		switch h := st.Holder(); {
		case h == to:
			return nil
		case h != "" && h == from.Record.Holder && st.Lease.Record.Transitions != from.Record.Transitions:
			return fmt.Errorf("election: handoff of lease %s/%s to %q: not taken in time; %q resumed leading (is a candidate with identity %q running?)", e.core.Namespace, e.core.Name, to, h, to)
		case h != "" && h != from.Record.Holder:
			return fmt.Errorf("election: handoff of lease %s/%s to %q: %q took over instead", e.core.Namespace, e.core.Name, to, h)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// RequestHandoff names to the preferred holder of the lease, retrying on
// conflicts, and returns the Lease as it now is: the version it wrote, or,
// when to already holds the lease, the version it read (nothing is written
// then; check Record.Holder).
func RequestHandoff(ctx context.Context, c *lease.Client, to string) (*lease.Snapshot, error) {
	const attempts = 10
	for attempt := 1; ; attempt++ {
		s, err := c.Get(ctx)
		if err != nil {
			return nil, fmt.Errorf("election: handoff: %w", err)
		}
		if s.Record.Holder == to {
			return s, nil
		}
		rec := s.Record
		rec.PreferredHolder = to
		out, err := c.Update(ctx, s, rec, 0)
		if errors.Is(err, lease.ErrConflict) && attempt < attempts {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("election: handoff: %w", err)
		}
		return out, nil
	}
}
