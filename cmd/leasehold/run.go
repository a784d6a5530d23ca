package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/internal/holder"
)

// runCmd is `leasehold run`: run a command only while this process leads.
type runCmd struct {
	*app
	lease, identity                           string
	leaseDuration, renewDeadline, retryPeriod time.Duration
	grace                                     time.Duration
	exitOnLoss                                bool
	http                                      string
}

func newRunCmd(a *app) *cobra.Command {
	r := &runCmd{app: a.logging()} // stderr lines timestamped (log.go)
	cmd := &cobra.Command{
		Use:   "run --lease NAME [flags] -- COMMAND [ARGS...]",
		Short: "Run a command only while this process is the leader",
		Long: `run campaigns for leadership of a Lease and runs COMMAND only while it leads.
Followers watch the Lease and take over the moment it is released, or once it
expires in their view (--lease-duration after they last saw it renewed).

COMMAND runs in a process group of its own, with stdin, stdout and stderr
passed through and these variables added to its environment:
  LEASEHOLD_TOKEN     the term's fencing token (decimal; grows with every term)
  LEASEHOLD_LEASE     namespace/name of the Lease
  LEASEHOLD_IDENTITY  this candidate's identity

When leadership is lost (renew deadline passed, lease taken, planned handoff)
COMMAND's process group gets SIGTERM, then SIGKILL after --grace, and run
campaigns again; with --exit-on-loss it exits instead. If COMMAND exits on its
own while leading, run releases the Lease and exits with COMMAND's status. On
SIGTERM or SIGINT run stops COMMAND the same way, releases the Lease and exits
with COMMAND's status. If leasehold itself is killed, COMMAND gets SIGKILL
(Linux) and the Lease expires after --lease-duration.

--http ADDR serves, for probes and Services that route to the leader:
  GET /leader        JSON: holder, token, since, transitions, me, identity, lease
  GET /leader/watch  the same object as a line of JSON on every change
  GET /healthz       500 if this process still leads past its renew deadline
  GET /readyz        200 only while this process leads, else 503
  GET /metrics       Prometheus metrics (leasehold_election_*)
The address it listens on is printed to stderr.

Exit status:
  COMMAND's status  COMMAND exited, or was stopped on SIGTERM/SIGINT (128+N if
                    killed by signal N); 0 if stopped before COMMAND started
  1                 API or RBAC error (the message names the missing verb)
  2                 usage: bad flags or durations, no "--" before COMMAND
  76                --exit-on-loss: leadership was lost, COMMAND stopped
  126, 127          COMMAND cannot be executed, or was not found`,
		Example: `  # Run a controller in three replicas; one of them leads at a time.
  leasehold run --lease my-controller -- ./controller --token-from-env

  # Fast failover, a readiness endpoint for the leader, and exit on loss.
  leasehold run --lease reports -n jobs --lease-duration 5s \
      --renew-deadline 3s --retry-period 1s --http :8080 --exit-on-loss \
      -- python report.py`,
		RunE: func(cmd *cobra.Command, args []string) error {
			argv, err := commandAfterDash(cmd, args, 0)
			if err != nil {
				return err
			}
			return r.run(cmd.Context(), argv)
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.lease, "lease", "", "name of the Lease to campaign for (required)")
	f.StringVar(&r.identity, "identity", "", "identity of this candidate (default: $POD_NAME, else the hostname)")
	f.DurationVar(&r.leaseDuration, "lease-duration", election.DefaultLeaseDuration, "how long followers wait after the last renewal they saw before taking over (whole seconds)")
	f.DurationVar(&r.renewDeadline, "renew-deadline", election.DefaultRenewDeadline, "leadership ends when renewals have failed this long (less than --lease-duration)")
	f.DurationVar(&r.retryPeriod, "retry-period", election.DefaultRetryPeriod, "interval between renewals and retries (less than --renew-deadline)")
	f.DurationVar(&r.grace, "grace", 10*time.Second, "time COMMAND has to exit after SIGTERM before it gets SIGKILL")
	f.BoolVar(&r.exitOnLoss, "exit-on-loss", false, "exit with status 76 when leadership is lost, instead of campaigning again")
	f.StringVar(&r.http, "http", "", "serve /leader, /leader/watch, /healthz, /readyz and /metrics on this address (host:port, :0 for any port)")
	return cmd
}

// commandAfterDash splits the arguments at "--": want positional arguments
// before it, the command after it.
func commandAfterDash(cmd *cobra.Command, args []string, want int) ([]string, error) {
	dash := cmd.ArgsLenAtDash()
	if dash < 0 || dash == len(args) {
		return nil, withCode(ExitUsage, fmt.Errorf("%s: give the command to run after \"--\", for example: %s", cmd.Name(), firstExample(cmd)))
	}
	if dash != want {
		return nil, withCode(ExitUsage, fmt.Errorf("%s: want %d argument(s) before \"--\", got %q", cmd.Name(), want, args[:dash]))
	}
	return args[dash:], nil
}

func firstExample(cmd *cobra.Command) string {
	for _, line := range strings.Split(cmd.Example, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return strings.TrimSuffix(line, "\\")
		}
	}
	return cmd.UseLine()
}

// validate checks what can be checked without a cluster.
func (r *runCmd) validate() error {
	var errs []error
	if r.lease == "" {
		errs = append(errs, errors.New("--lease is required"))
	}
	if err := (holder.Timing{LeaseDuration: r.leaseDuration, RenewDeadline: r.renewDeadline, RetryPeriod: r.retryPeriod}).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("timing (--lease-duration, --renew-deadline, --retry-period): %w", err))
	}
	if r.grace < 0 {
		errs = append(errs, fmt.Errorf("--grace %v must not be negative", r.grace))
	}
	if err := errors.Join(errs...); err != nil {
		return withCode(ExitUsage, fmt.Errorf("run: %w", err))
	}
	return nil
}

// runState is what the work function leaves for run to decide the exit
// status. Only the goroutine calling Elector.Run touches it.
type runState struct {
	exited  bool // COMMAND exited on its own while leading
	stopped bool // COMMAND was stopped because leasehold is shutting down
	lost    bool // --exit-on-loss and leadership was lost
	code    int
	err     error // COMMAND could not be started
}

func (r *runCmd) run(ctx context.Context, argv []string) error {
	if err := r.validate(); err != nil {
		return err
	}
	if err := lookCommand(argv); err != nil {
		return err
	}
	ns, err := r.namespace()
	if err != nil {
		return withCode(ExitError, err)
	}
	cs, err := r.clientset()
	if err != nil {
		return withCode(ExitError, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	events, stopEvents := startEventRecorder(cs, ns) // records only where RBAC allows (events.go)
	defer stopEvents()
	e, err := election.New(election.Config{
		Leases: cs.CoordinationV1(), Namespace: ns, Name: r.lease, Identity: r.identity,
		LeaseDuration: r.leaseDuration, RenewDeadline: r.renewDeadline, RetryPeriod: r.retryPeriod,
		Registerer: reg,
		Logger:     r.logger(), Recorder: events,
	})
	if err != nil {
		return withCode(ExitUsage, err)
	}
	ref := ns + "/" + r.lease
	if r.http != "" {
		srv, err := serveHTTP(r.http, leaderHandler(e, e.Identity(), ref, reg))
		if err != nil {
			return withCode(ExitError, err)
		}
		fmt.Fprintf(r.io.Err, "leasehold: serving HTTP on %s\n", srv.Addr())
		defer func() {
			if err := srv.Close(); err != nil {
				fmt.Fprintln(r.io.Err, "leasehold: http:", err)
			}
		}()
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var st runState
	err = e.Run(runCtx, func(lctx context.Context) error {
		return r.lead(ctx, lctx, stopRun, e.Identity(), ref, argv, &st)
	})
	switch {
	case st.err != nil:
		return st.err
	case st.exited, st.stopped:
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(r.io.Err, "leasehold:", err)
		}
		return exitStatus(st.code)
	case st.lost:
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(r.io.Err, "leasehold:", err) // a permanent API error ended the term
		}
		return withCode(ExitLost, fmt.Errorf("lost leadership of lease %s; exiting (--exit-on-loss)", ref))
	case ctx.Err() != nil:
		return nil // shut down while not leading
	case err != nil:
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		return withCode(ExitError, err)
	}
	return nil
}

// lead runs COMMAND for one term. ctx is the whole command's context (ends
// on SIGTERM/SIGINT), lctx the term's.
func (r *runCmd) lead(ctx, lctx context.Context, stopRun context.CancelFunc, identity, ref string, argv []string, st *runState) error {
	token, _ := election.TokenFrom(lctx)
	fmt.Fprintf(r.io.Err, "leasehold: leading lease %s as %q (token %s); starting %s\n", ref, identity, token, argv[0])
	c, err := startChild(childSpec{argv: argv, io: r.io.child(), env: []string{
		"LEASEHOLD_TOKEN=" + token.String(),
		"LEASEHOLD_LEASE=" + ref,
		"LEASEHOLD_IDENTITY=" + identity,
	}})
	if err != nil {
		st.err = err
		stopRun()
		return nil
	}
	select {
	case <-c.Done():
		st.exited, st.code = true, c.Code()
		fmt.Fprintf(r.io.Err, "leasehold: %s exited with status %d; releasing lease %s\n", argv[0], st.code, ref)
		stopRun() // Run releases and returns, even if the term ended meanwhile
		return nil
	case <-lctx.Done():
	}
	if ctx.Err() != nil {
		fmt.Fprintf(r.io.Err, "leasehold: shutting down; stopping %s (grace %v)\n", argv[0], r.grace)
		st.stopped, st.code = true, c.Stop(r.grace)
		return nil
	}
	cause := context.Cause(lctx)
	fmt.Fprintf(r.io.Err, "leasehold: leadership of lease %s ended (%v); stopping %s (grace %v)\n", ref, cause, argv[0], r.grace)
	code := c.Stop(r.grace)
	fmt.Fprintf(r.io.Err, "leasehold: %s stopped with status %d\n", argv[0], code)
	if r.exitOnLoss {
		st.lost = true
		stopRun()
	}
	return nil
}

// exitStatus returns COMMAND's status as the error that ends leasehold with it.
func exitStatus(code int) error {
	if code == ExitOK {
		return nil
	}
	return withCode(code, errors.New(""))
}
