package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/leasehold/leasehold/internal/candidate"
	"github.com/leasehold/leasehold/internal/chaos"
)

// outcome is one schedule run against one fleet: its result, and the error
// that ended the run early, if any (res then holds what was recorded until
// then; see chaos.Run).
type outcome struct {
	res *chaos.Result
	err error
}

// summary sums up the schedules of one fleet within, or beyond, the
// clock-rate bound.
type summary struct {
	schedules, terms            int
	overlaps, paused            int
	fenced, writes, stale       int
	unfenceable                 int
	backwards, errs             int
	byLeasehold, byClientGo     int
	byPython                    int
	maxNoLeader, maxNoLeaderAll time.Duration
	// Seeds of the schedules in which Go Leasehold members (electors or lock
	// holders), client-go members or Python Leasehold members broke safety.
	leaseholdSeeds, clientGoSeeds, pythonSeeds []uint64
	// Runs that ended with an error; processes left over (chaos.Result.Leftover);
	// writes outside every term of their writer; runs with no term or no
	// accepted write. Each fails the command, as do errs.
	failedRuns, orphans, orphanWrites, emptyRuns int
	// Waiters of a lock fleet served later than the fleet's size allows
	// (chaos.Report.Starved); each fails the command.
	starved      int
	starvedSeeds []uint64
	// Seeds of the schedules with each of those problems.
	failedSeeds, errSeeds, orphanSeeds, orphanWriteSeeds, emptySeeds []uint64
}

// fleetTally is everything counted for one fleet.
type fleetTally struct {
	within, beyond summary
	// Faults applied, and faults that could not be applied, by kind.
	injected, failed map[chaos.Kind]int
	failedSeeds      map[chaos.Kind][]uint64
}

// tally collects the outcomes of one invocation, prints its tables and
// decides its exit status. Not safe for concurrent use.
type tally struct {
	order    []string
	fleets   map[string]*fleetTally
	perFleet int // schedules requested per fleet
	// Control run: the protections switched off.
	noDeadline, noFencing bool
}

func newTally(order []string, perFleet int, noDeadline, noFencing bool) *tally {
	t := &tally{order: order, fleets: map[string]*fleetTally{}, perFleet: perFleet, noDeadline: noDeadline, noFencing: noFencing}
	for _, impl := range order {
		t.fleets[impl] = &fleetTally{injected: map[chaos.Kind]int{}, failed: map[chaos.Kind]int{}, failedSeeds: map[chaos.Kind][]uint64{}}
	}
	return t
}

func (t *tally) control() bool { return t.noDeadline || t.noFencing }

// add counts one outcome in the tally of its fleet.
func (t *tally) add(o outcome) {
	f := t.fleets[o.res.Impl]
	for kind, c := range o.res.Injected {
		f.injected[kind] += c
	}
	for kind, errs := range o.res.Failed {
		if len(errs) > 0 {
			f.failed[kind] += len(errs)
			f.failedSeeds[kind] = append(f.failedSeeds[kind], o.res.Seed)
		}
	}
	if o.res.Tolerated {
		f.within.add(o)
	} else {
		f.beyond.add(o)
	}
}

func (s *summary) add(o outcome) {
	res := o.res
	s.schedules++
	if len(res.Errors) > 0 {
		s.errs += len(res.Errors)
		s.errSeeds = append(s.errSeeds, res.Seed)
	}
	if len(res.Leftover) > 0 {
		s.orphans += len(res.Leftover)
		s.orphanSeeds = append(s.orphanSeeds, res.Seed)
	}
	if o.err != nil { // nothing was checked
		s.failedRuns++
		s.failedSeeds = append(s.failedSeeds, res.Seed)
		return
	}
	s.terms += res.Terms
	lh, cg, py := res.Blame["leasehold"]+res.Blame["lock"]+res.Blame["shards"], res.Blame["client-go"], res.Blame[candidate.PythonImpl]
	s.byLeasehold += lh
	s.byClientGo += cg
	s.byPython += py
	if lh > 0 {
		s.leaseholdSeeds = append(s.leaseholdSeeds, res.Seed)
	}
	if cg > 0 {
		s.clientGoSeeds = append(s.clientGoSeeds, res.Seed)
	}
	if py > 0 {
		s.pythonSeeds = append(s.pythonSeeds, res.Seed)
	}
	s.overlaps += len(res.Overlaps)
	s.paused += len(res.PausedOverlaps)
	s.writes += res.Fence.Writes
	s.fenced += len(res.Fence.Fenced)
	s.stale += len(res.Fence.Stale)
	s.unfenceable += res.Fence.Unfenceable
	s.backwards += len(res.TokensBackwards)
	if len(res.Starved) > 0 {
		s.starved += len(res.Starved)
		s.starvedSeeds = append(s.starvedSeeds, res.Seed)
	}
	if res.Fence.Orphans > 0 {
		s.orphanWrites += res.Fence.Orphans
		s.orphanWriteSeeds = append(s.orphanWriteSeeds, res.Seed)
	}
	if res.Terms == 0 || res.Fence.Accepted == 0 {
		s.emptyRuns++
		s.emptySeeds = append(s.emptySeeds, res.Seed)
	}
	s.maxNoLeader = max(s.maxNoLeader, res.MaxNoLeader)
	s.maxNoLeaderAll = max(s.maxNoLeaderAll, res.MaxNoLeaderAll)
}

// atFault lists the problems of s that fail the command, each with the
// seeds of its schedules.
func (s *summary) atFault() []problem {
	return []problem{
		{"runs that failed", s.failedRuns, s.failedSeeds},
		{"harness errors", s.errs, s.errSeeds},
		{"processes left over", s.orphans, s.orphanSeeds},
		{"writes outside every term (orphan writes)", s.orphanWrites, s.orphanWriteSeeds},
		{"runs with no term or no accepted write", s.emptyRuns, s.emptySeeds},
		{"lock waiters starved", s.starved, s.starvedSeeds},
	}
}

type problem struct {
	what  string
	n     int
	seeds []uint64
}

// controlApplies reports whether a control run that switches off the hard
// deadline or fencing must show violations by the Leasehold members (Go or
// Python) of a fleet of impl: --unsafe-no-deadline applies to Leasehold
// electors only, fencing to every Leasehold member, and client-go has
// neither.
func controlApplies(impl string, noDeadline, noFencing bool) bool {
	switch impl {
	case "leasehold", "mixed", "python", "mixed-python":
		return noDeadline || noFencing
	case "lock", "shards":
		return noFencing
	}
	return false
}

// verdict returns the exit status, 0 or 1, and why it is 1: a Leasehold
// member (Go or Python) broke safety within the clock-rate bound (outside
// control runs);
// a run failed, had harness errors, left a process over, logged a write
// outside every term or had no term or no accepted write; a fault could
// not be applied; a schedule did not run; or a control run showed no
// violation in a fleet whose protection it switched off.
func (t *tally) verdict() (int, []string) {
	var why []string
	for _, impl := range t.order {
		f := t.fleets[impl]
		if !t.control() && len(f.within.leaseholdSeeds) > 0 {
			why = append(why, fmt.Sprintf("%s: Leasehold members broke safety within the clock-rate bound (seeds %s)", impl, seeds(f.within.leaseholdSeeds)))
		}
		if !t.control() && len(f.within.pythonSeeds) > 0 {
			why = append(why, fmt.Sprintf("%s: Python Leasehold members broke safety within the clock-rate bound (seeds %s)", impl, seeds(f.within.pythonSeeds)))
		}
		for _, s := range []*summary{&f.within, &f.beyond} {
			for _, p := range s.atFault() {
				if p.n > 0 {
					why = append(why, fmt.Sprintf("%s: %s: %d (seeds %s)", impl, p.what, p.n, seeds(p.seeds)))
				}
			}
		}
		for _, kind := range allKinds() {
			if n := f.failed[kind]; n > 0 {
				why = append(why, fmt.Sprintf("%s: %s faults that failed to apply: %d (seeds %s)", impl, kind, n, seeds(f.failedSeeds[kind])))
			}
		}
		if ran := f.within.schedules + f.beyond.schedules; ran < t.perFleet {
			why = append(why, fmt.Sprintf("%s: %d of %d schedules did not run", impl, t.perFleet-ran, t.perFleet))
		}
		if t.control() && controlApplies(impl, t.noDeadline, t.noFencing) && f.byLeaseholdMembers() == 0 {
			why = append(why, fmt.Sprintf("%s: control run found no violation by Leasehold members", impl))
		}
	}
	if len(why) > 0 {
		return 1, why
	}
	return 0, nil
}

// allKinds lists the fault kinds in the order of the faults table.
func allKinds() []chaos.Kind {
	return append(slices.Clone(chaos.Kinds), chaos.ClockRate)
}

// resultColumns are the columns of a results table; new ones go at the end.
var resultColumns = []string{"fleet", "schedules", "terms", "overlaps", "paused-overlaps", "writes", "fenced-writes", "stale-writes",
	"of-them-unfenceable", "tokens-back", "by-leasehold", "by-client-go", "errors", "max-no-leader-after-heal", "max-no-leader-run",
	"seeds-leasehold-broke", "seeds-client-go-broke", "failed-runs", "orphans", "orphan-writes", "empty-runs",
	"by-python", "seeds-python-broke", "waiters-starved"}

// row is the results-table row of s for fleet impl.
func (s *summary) row(impl string) []string {
	return []string{impl, fmt.Sprint(s.schedules), fmt.Sprint(s.terms),
		fmt.Sprint(s.overlaps), fmt.Sprint(s.paused), fmt.Sprint(s.writes), fmt.Sprint(s.fenced), fmt.Sprint(s.stale),
		fmt.Sprint(s.unfenceable), fmt.Sprint(s.backwards), fmt.Sprint(s.byLeasehold), fmt.Sprint(s.byClientGo), fmt.Sprint(s.errs),
		s.maxNoLeader.Round(time.Millisecond).String(), s.maxNoLeaderAll.Round(time.Millisecond).String(),
		seeds(s.leaseholdSeeds), seeds(s.clientGoSeeds), fmt.Sprint(s.failedRuns), fmt.Sprint(s.orphans), fmt.Sprint(s.orphanWrites), fmt.Sprint(s.emptyRuns),
		fmt.Sprint(s.byPython), seeds(s.pythonSeeds), fmt.Sprint(s.starved)}
}

// byLeaseholdMembers counts the violations blamed on the fleet's Leasehold
// members, Go and Python, within and beyond the clock-rate bound.
func (f *fleetTally) byLeaseholdMembers() int {
	return f.within.byLeasehold + f.beyond.byLeasehold + f.within.byPython + f.beyond.byPython
}

// faultColumns are the columns of the faults table.
func faultColumns() []string {
	cols := []string{"faults injected", "schedules"}
	for _, kind := range allKinds() {
		cols = append(cols, string(kind))
	}
	return append(cols, "failed-faults")
}

func (f *fleetTally) faultRow(impl string) []string {
	row := []string{impl, fmt.Sprint(f.within.schedules + f.beyond.schedules)}
	failed := 0
	for _, kind := range allKinds() {
		row = append(row, fmt.Sprint(f.injected[kind]))
		failed += f.failed[kind]
	}
	return append(row, fmt.Sprint(failed))
}

// controlColumns are the columns of the control table.
var controlColumns = []string{"control", "schedules", "violations-by-leasehold", "verdict"}

func (t *tally) controlRow(impl string) []string {
	f := t.fleets[impl]
	row := []string{impl, fmt.Sprint(f.within.schedules + f.beyond.schedules)}
	switch n := f.byLeaseholdMembers(); {
	case !controlApplies(impl, t.noDeadline, t.noFencing):
		return append(row, fmt.Sprint(n), "not applicable")
	case n == 0:
		return append(row, "0", "MISSED")
	default:
		return append(row, fmt.Sprint(n), "shown")
	}
}

// print prints the faults table, the results tables (within the clock-rate
// bound, and beyond it if any schedule was) and the control table in a
// control run, with the seeds at fault below each.
func (t *tally) print(out io.Writer) {
	rows := [][]string{faultColumns()}
	for _, impl := range t.order {
		rows = append(rows, t.fleets[impl].faultRow(impl))
	}
	printTable(out, rows)
	for _, impl := range t.order {
		f := t.fleets[impl]
		for _, kind := range allKinds() {
			if n := f.failed[kind]; n > 0 {
				fmt.Fprintf(out, "  %s: %s faults that failed to apply: %d, seeds %s\n", impl, kind, n, seeds(f.failedSeeds[kind]))
			}
		}
	}
	fmt.Fprintln(out, "\nclock rates within the documented bound:")
	t.results(out, func(f *fleetTally) *summary { return &f.within })
	nBeyond := 0
	for _, impl := range t.order {
		nBeyond += t.fleets[impl].beyond.schedules
	}
	if nBeyond > 0 {
		fmt.Fprintln(out, "\nclock rates beyond the documented bound (overlaps expected; the fencing token must still keep stale writes at 0):")
		t.results(out, func(f *fleetTally) *summary { return &f.beyond })
	}
	if t.control() {
		fmt.Fprintf(out, "\ncontrol run (hard deadline disabled %v, fencing disabled %v): each fleet the switched-off protection applies to must show violations by its Leasehold members:\n", t.noDeadline, t.noFencing)
		rows := [][]string{controlColumns}
		for _, impl := range t.order {
			rows = append(rows, t.controlRow(impl))
		}
		printTable(out, rows)
	}
}

// printVerdict prints why the exit status is not 0, if it is not, and
// returns it.
func (t *tally) printVerdict(out io.Writer) int {
	code, why := t.verdict()
	if code != 0 {
		fmt.Fprintf(out, "\nFAILED (exit status %d):\n", code)
		for _, w := range why {
			fmt.Fprintf(out, "  %s\n", w)
		}
	}
	return code
}

// results prints one results table, a row per fleet, and the seeds at
// fault below it.
func (t *tally) results(out io.Writer, pick func(*fleetTally) *summary) {
	rows := [][]string{resultColumns}
	for _, impl := range t.order {
		rows = append(rows, pick(t.fleets[impl]).row(impl))
	}
	printTable(out, rows)
	for _, impl := range t.order {
		for _, p := range pick(t.fleets[impl]).atFault() {
			if p.n > 0 {
				fmt.Fprintf(out, "  %s: %s: %d, seeds %s\n", impl, p.what, p.n, seeds(p.seeds))
			}
		}
	}
}

func printTable(out io.Writer, rows [][]string) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	_ = w.Flush()
}

func seeds(s []uint64) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Trim(fmt.Sprint(s), "[]")
}
