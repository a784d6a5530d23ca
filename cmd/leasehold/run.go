package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/internal/podwitness"
	"github.com/leasehold/leasehold/shard"
)

// runCmd is `leasehold run`: run a command only while this process leads.
type runCmd struct {
	*app
	lease, identity                           string
	leaseDuration, renewDeadline, retryPeriod time.Duration
	grace                                     time.Duration
	exitOnLoss                                bool
	http                                      string
	podAware                                  bool
	followContainer, followURL                string

	ready                             *readiness // set in run when --follow-* is given
	restart                           restartPolicy
	restartBackoff, restartBackoffMax time.Duration
	shards                            int

	timing holder.Timing // completed by validate
}

func newRunCmd(a *app) *cobra.Command {
	r := &runCmd{app: a.logging(), restart: restartNever} // stderr lines timestamped (log.go)
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
own while leading, run releases the Lease and exits with COMMAND's status,
unless --restart says to start it again: then run releases the Lease, waits
the back-off and campaigns again, so a crash-looping COMMAND does not keep
the leadership from replicas whose COMMAND works. The back-off starts at
--restart-backoff, doubles with each exit and stops growing at
--restart-backoff-max; a run that lasted --restart-backoff-max starts it over.
On
SIGTERM, SIGINT or SIGHUP run stops COMMAND the same way, releases the Lease
and exits with COMMAND's status. If leasehold itself is killed, COMMAND gets
SIGKILL (Linux) and the Lease expires after --lease-duration.

In a Pod whose manifest passes POD_NAME, POD_NAMESPACE and POD_UID (downward
API) and LEASEHOLD_CONTAINER (the container's name), as deploy/base does, run
records on the Lease the exact container instance that leads. Followers that
may get and watch pods then take over as soon as the kubelet reports that
container terminated, about a second after a crash, instead of after
--lease-duration. Nothing short of that evidence counts: a node that stops
reporting, a partition or a force-deleted Pod waits out --lease-duration.
On SIGTERM (a Pod deleted, a rollout) the leader, once COMMAND has stopped,
releases the Lease reserved for the replica that will survive: a Ready Pod of
the newest revision among the Pods that share its labels, else the youngest
one not terminating (needs list on pods; replicas use their Pod name as
identity). It takes over at once, and a rolling update moves the leadership
once. --pod-aware=false turns both off.

A sidecar next to its app gives --follow-container APP (the app container's
Ready condition in this Pod's status; needs POD_NAME, POD_NAMESPACE and get
and watch on pods) or --follow-url URL (a 2xx answer means ready): run then
campaigns only while the app is ready, and resigns as soon as it is not, so
a crash-looping app never keeps the leadership. The app learns of the end of
a term at once from /leader/watch.

Only --lease-duration is needed to change the timing: unless set, the renew
deadline is 2/3 of it and the retry period a fifth of the renew deadline
(15s, 10s, 2s by default).

At start run checks that the Kubernetes API answers, that the namespace
exists and that RBAC allows every verb it will need on the Lease (get, watch,
update, and create while the Lease does not exist), and exits with 1 naming
what is missing. While the API cannot be reached, run retries: it prints the
first error at once and then each different one, and /healthz fails.

--http ADDR serves, for probes and Services that route to the leader:
  GET /leader        JSON: holder, token, since, transitions, me, identity, lease
  GET /leader/watch  the same object as a line of JSON on every change
  GET /healthz       500 while the Kubernetes API cannot be reached, or if this
                     process still leads past its renew deadline
  GET /readyz        200 only while this process leads, else 503
  GET /metrics       Prometheus metrics (leasehold_election_*)
The address it listens on is printed to stderr.

` + signalHelp + `
` + shardsHelp + `

Exit status:
  COMMAND's status  COMMAND exited (and --restart did not start it again), or
                    was stopped on SIGTERM, SIGINT or SIGHUP (128+N if killed
                    by signal N; its last status if stopped while waiting to
                    start it again); 0 if stopped before COMMAND started
  1                 API or RBAC error, or the namespace does not exist (the
                    message names the missing verb or the namespace)
  2                 usage: bad flags or durations, no "--" before COMMAND
  76                --exit-on-loss: leadership was lost, COMMAND stopped
  126, 127          COMMAND cannot be executed, or was not found`,
		Example: `  # Run a controller in three replicas; one of them leads at a time.
  leasehold run --lease my-controller -- ./controller --token-from-env

  # Start a crashing worker again (1s, 2s, 4s ... 1m apart), letting
  # another replica lead while it backs off.
  leasehold run --lease worker --restart on-failure -- ./worker

  # Fast failover, a readiness endpoint for the leader, and exit on loss.
  leasehold run --lease reports -n jobs --lease-duration 5s --http :8080 \
      --exit-on-loss -- python report.py`,
		RunE: func(cmd *cobra.Command, args []string) error {
			argv, err := commandAfterDash(cmd, args, 0)
			if err != nil {
				return err
			}
			if err := r.validate(cmd.Flags()); err != nil {
				return err
			}
			if r.shards > 0 {
				return r.runShards(cmd.Context(), argv)
			}
			return r.run(cmd.Context(), argv)
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.lease, "lease", "", "name of the Lease to campaign for (required)")
	f.StringVar(&r.identity, "identity", "", "identity of this candidate (default: $POD_NAME, else the hostname)")
	f.DurationVar(&r.leaseDuration, "lease-duration", election.DefaultLeaseDuration, "how long followers wait after the last renewal they saw before taking over (whole seconds)")
	f.DurationVar(&r.renewDeadline, "renew-deadline", 0, "leadership ends when renewals have failed this long; less than --lease-duration (default 2/3 of it: 10s)")
	f.DurationVar(&r.retryPeriod, "retry-period", 0, "interval between renewals and retries; less than --renew-deadline (default 1/5 of it: 2s)")
	f.DurationVar(&r.grace, "grace", 10*time.Second, "time COMMAND has to exit after SIGTERM before it gets SIGKILL")
	f.BoolVar(&r.exitOnLoss, "exit-on-loss", false, "exit with status 76 when leadership is lost, instead of campaigning again")
	f.Var(&r.restart, "restart", "start COMMAND again when it exits while leading: never, on-failure (non-zero status) or always")
	_ = cmd.RegisterFlagCompletionFunc("restart", func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, p := range restartPolicies {
			if strings.HasPrefix(p, toComplete) {
				out = append(out, p)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
	f.DurationVar(&r.restartBackoff, "restart-backoff", time.Second, "delay before the first restart; doubles with each exit that follows")
	f.DurationVar(&r.restartBackoffMax, "restart-backoff-max", time.Minute, "longest delay between restarts; a run this long resets the back-off")
	f.BoolVar(&r.podAware, "pod-aware", true, "in a Pod, publish this container instance and, as a follower, take over as soon as the kubelet reports the leader's container terminated (needs get and watch on pods; see deploy/base)")
	f.StringVar(&r.followContainer, "follow-container", "", "campaign only while container NAME of this Pod is Ready, and resign when it is not (a sidecar following its app; reads the Pod's status, needs get and watch on pods)")
	f.StringVar(&r.followURL, "follow-url", "", "campaign only while GET URL answers 2xx (checked every --retry-period), and resign when it does not")
	f.IntVar(&r.shards, "shards", 0, "join the shard group --lease with this many shards and run COMMAND once per shard owned (see above)")
	f.StringVar(&r.http, "http", "", "serve /leader, /leader/watch, /healthz, /readyz and /metrics on this address (host:port, :0 for any port)")
	return cmd
}

// pods is the Pods API for pod-aware takeover, nil when --pod-aware=false.
func (r *runCmd) pods(cs kubernetes.Interface) corev1client.PodsGetter {
	if !r.podAware {
		return nil
	}
	return cs.CoreV1()
}

// successor chooses, on shutdown in a Pod, the replica to hand the lease
// to (podwitness.Successor), when --pod-aware and this replica's identity
// is its Pod name, as its peers' are; nil otherwise.
func (r *runCmd) successor(cs kubernetes.Interface) func(context.Context) string {
	ns, pod := os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME")
	if !r.podAware || ns == "" || pod == "" || (r.identity != "" && r.identity != pod) {
		return nil
	}
	return func(ctx context.Context) string {
		name, why, err := podwitness.Successor(ctx, cs.CoreV1(), ns, pod)
		switch {
		case err != nil:
			fmt.Fprintf(r.io.Err, "leasehold: no successor chosen, releasing the lease to anyone: %v\n", err)
		case name == "":
			fmt.Fprintln(r.io.Err, "leasehold: no other replica to hand the lease to; releasing it")
		default:
			fmt.Fprintf(r.io.Err, "leasehold: handing the lease to %s (%s)\n", name, why)
		}
		return name
	}
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

// validate checks what can be checked without a cluster, every problem at
// once, and completes the timing.
func (r *runCmd) validate(fs *pflag.FlagSet) error {
	var errs []error
	if r.lease == "" {
		errs = append(errs, errors.New("--lease is required: the name of the Lease to campaign for"))
	} else if err := checkLeaseName("--lease", r.lease); err != nil {
		errs = append(errs, err)
	}
	t, terrs := completeTiming(fs, timingFlags{lease: "lease-duration", renew: "renew-deadline", retry: "retry-period"},
		r.leaseDuration, r.renewDeadline, r.retryPeriod)
	errs = append(errs, terrs...)
	r.timing = t
	errs = append(errs, nonNegative("grace", r.grace))
	switch {
	case r.restartBackoff <= 0:
		errs = append(errs, fmt.Errorf("--restart-backoff %s: must be positive", shortDuration(r.restartBackoff)))
	case r.restartBackoffMax < r.restartBackoff:
		errs = append(errs, fmt.Errorf("--restart-backoff-max %s: must be at least --restart-backoff (%s)", shortDuration(r.restartBackoffMax), shortDuration(r.restartBackoff)))
	}
	if r.shards < 0 || r.shards > shard.MaxShards {
		errs = append(errs, fmt.Errorf("--shards %d must be between 1 and %d (0: no shards, one COMMAND while leading)", r.shards, shard.MaxShards))
	}
	if r.http != "" {
		errs = append(errs, checkListenAddr("http", r.http))
	}
	switch {
	case r.followContainer != "" && r.followURL != "":
		errs = append(errs, errors.New("--follow-container and --follow-url: give one"))
	case r.followURL != "":
		errs = append(errs, checkFollowURL(r.followURL))
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
	ran     time.Duration // how long COMMAND ran, when it exited on its own
	err     error         // COMMAND could not be started
}

func (r *runCmd) run(ctx context.Context, argv []string) error {
	if err := lookCommand(argv); err != nil {
		return err
	}
	// From here on, job-control and user signals are ours to relay.
	sup := startSupervisor(r.io.Notify, r.io.Err)
	defer sup.close()
	ns, err := r.namespace()
	if err != nil {
		return asFailure(err)
	}
	cs, err := r.clientset()
	if err != nil {
		return asFailure(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	events, stopEvents := startEventRecorder(cs, ns) // records only where RBAC allows (events.go)
	defer stopEvents()
	t := r.timing
	e, err := election.New(election.Config{
		Leases: cs.CoordinationV1(), Namespace: ns, Name: r.lease, Identity: r.identity,
		LeaseDuration: t.LeaseDuration, RenewDeadline: t.RenewDeadline, RetryPeriod: t.RetryPeriod,
		Registerer: reg,
		Logger:     r.logger(), Recorder: events,
		Pods:      r.pods(cs),
		Successor: r.successor(cs),
		PodAwareReport: func(part string, on bool, detail string) {
			switch {
			case part == "publish" && on:
				fmt.Fprintf(r.io.Err, "leasehold: pod-aware: this replica's terms name container %s; followers take over when the kubelet reports it terminated\n", detail)
			case part == "publish" && os.Getenv("POD_NAME") != "":
				fmt.Fprintf(r.io.Err, "leasehold: pod-aware takeover off for this replica's terms (%s); followers wait --lease-duration after it stops\n", detail)
			case part == "witness":
				fmt.Fprintf(r.io.Err, "leasehold: pod-aware takeover off (%s): after a leader's container stops this replica waits --lease-duration; grant get, watch and list on pods as deploy/base/role.yaml does\n", detail)
			}
		},
	})
	if err != nil {
		return withCode(ExitUsage, err)
	}
	ref := ns + "/" + r.lease
	status := &apiStatus{out: r.io.Err, retry: t.RetryPeriod}
	if r.http != "" {
		srv, err := serveHTTP(r.http, leaderHandler(healthSource{e, status}, e.Identity(), ref, reg))
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
	check := &preflight{cs: cs, ns: ns, name: r.lease, status: status}
	if err := check.run(ctx, t.RetryPeriod); err != nil {
		if ctx.Err() != nil {
			return nil // shut down before campaigning
		}
		return withCode(ExitError, apiMessage(err))
	}
	followCtx, stopFollow := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopFollow()
	switch {
	case r.followURL != "":
		r.ready = newReadiness(r.io.Err, "GET "+r.followURL)
		wg.Go(func() { r.ready.pollURL(followCtx, r.followURL, t.RetryPeriod) })
	case r.followContainer != "":
		pns, pod, err := ownPod()
		if err != nil {
			return withCode(ExitUsage, err)
		}
		if err := checkContainer(ctx, cs.CoreV1(), pns, pod, r.followContainer); err != nil {
			return withCode(ExitError, err)
		}
		r.ready = newReadiness(r.io.Err, "container "+r.followContainer)
		wg.Go(func() { r.ready.watchContainer(followCtx, cs.CoreV1(), pns, pod, r.followContainer, t.RetryPeriod) })
	}
	return r.campaign(ctx, e, sup, status, ref, argv)
}

// campaign runs the election until shutdown, --exit-on-loss, COMMAND's own
// exit (unless --restart starts it again) or a permanent API error, and
// returns the outcome.
func (r *runCmd) campaign(ctx context.Context, e *election.Elector, sup *supervisor, status *apiStatus, ref string, argv []string) error {
	apiCtx, stopAPI := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopAPI()
	wg.Go(func() { followAPI(apiCtx, e, status) })
	delays := backoff{initial: r.restartBackoff, max: r.restartBackoffMax}
	last := -1 // COMMAND's status when --restart started it again, -1 none
	for restarts := 0; ; {
		if r.ready != nil && !r.ready.awaitReady(ctx) {
			if last >= 0 {
				return exitStatus(last)
			}
			return nil // shut down while the app was not ready
		}
		runCtx, stopRun := context.WithCancelCause(ctx)
		var gate sync.WaitGroup
		if r.ready != nil {
			gate.Go(func() { r.ready.resignWhenNotReady(runCtx, stopRun) })
		}
		var st runState
		err := e.Run(runCtx, func(lctx context.Context) error {
			return r.lead(ctx, lctx, func() { stopRun(nil) }, e, sup, ref, argv, &st)
		})
		notReady := errors.Is(context.Cause(runCtx), errAppNotReady)
		stopRun(nil)
		gate.Wait()
		if last >= 0 && ctx.Err() != nil && !st.exited && !st.stopped && st.err == nil {
			return exitStatus(last) // shut down while campaigning to start it again
		}
		if notReady && ctx.Err() == nil && st.err == nil && !st.exited {
			continue // resigned; campaign again once the app is ready
		}
		if !st.exited || !r.restart.restarts(st.code) || ctx.Err() != nil || (err != nil && !errors.Is(err, context.Canceled)) {
			return r.outcome(ctx, st, err, ref)
		}
		last = st.code
		restarts++
		// The lease was released when COMMAND exited: while this replica
		// backs off, another one may lead.
		d := delays.after(st.ran)
		fmt.Fprintf(r.io.Err, "leasehold: --restart %s: campaigning again in %v to start %s (restart %d)\n", r.restart, d, argv[0], restarts)
		wait := time.NewTimer(d)
		select {
		case <-ctx.Done():
			wait.Stop()
			return exitStatus(st.code)
		case <-wait.C:
		}
	}
}

// outcome turns how the election ended into run's exit status.
func (r *runCmd) outcome(ctx context.Context, st runState, err error, ref string) error {
	switch {
	case st.err != nil:
		return st.err
	case st.exited, st.stopped:
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(r.io.Err, "leasehold:", apiMessage(err))
		}
		return exitStatus(st.code)
	case st.lost:
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(r.io.Err, "leasehold:", apiMessage(err)) // a permanent API error ended the term
		}
		return withCode(ExitLost, fmt.Errorf("lost leadership of lease %s; exiting (--exit-on-loss)", ref))
	case ctx.Err() != nil:
		return nil // shut down while not leading
	case err != nil:
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		return withCode(ExitError, apiMessage(err))
	}
	return nil
}

// followAPI reports the errors of the elector's watch (the API unreachable,
// for example) to status until ctx ends: printed when they change, and
// failing /healthz while they last.
func followAPI(ctx context.Context, e *election.Elector, status *apiStatus) {
	for {
		l, changed := e.Observe()
		if l.Synced || l.Err != nil {
			status.report(l.Err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// lead runs COMMAND for one term. ctx is the whole command's context (ends
// on SIGTERM, SIGINT or SIGHUP), lctx the term's.
func (r *runCmd) lead(ctx, lctx context.Context, stopRun context.CancelFunc, e *election.Elector, sup *supervisor, ref string, argv []string, st *runState) error {
	token, _ := election.TokenFrom(lctx)
	identity := e.Identity()
	fmt.Fprintf(r.io.Err, "leasehold: leading lease %s as %q (token %s); starting %s\n", ref, identity, token, argv[0])
	c, err := sup.start(childSpec{argv: argv, io: r.io.child(), env: []string{
		"LEASEHOLD_TOKEN=" + token.String(),
		"LEASEHOLD_LEASE=" + ref,
		"LEASEHOLD_IDENTITY=" + identity,
	}}, argv[0], func() bool { return lctx.Err() == nil && e.Check(nil) == nil })
	if err != nil {
		st.err = err
		stopRun()
		return nil
	}
	// (start's holds: COMMAND may run only while the term holds: its context has not
	// ended and its renew deadline has not passed (a stopped process sees
	// the deadline pass before its timer fires).)
	started := time.Now()
	defer sup.detach(c)
	select {
	case <-c.Done():
		if !sup.killedOnResume(c) {
			st.exited, st.code, st.ran = true, c.Code(), time.Since(started)
			fmt.Fprintf(r.io.Err, "leasehold: %s exited with status %d; releasing lease %s\n", argv[0], st.code, ref)
			stopRun() // Run releases and returns, even if the term ended meanwhile
			return nil
		}
		<-lctx.Done() // killed because the term ended: its context follows
	case <-lctx.Done():
	}
	if ctx.Err() != nil {
		fmt.Fprintf(r.io.Err, "leasehold: shutting down; stopping %s (grace %v)\n", argv[0], r.grace)
		st.stopped, st.code = true, c.Stop(r.grace)
		return nil
	}
	leader, _ := e.Observe()
	holderNow := leader.Holder
	if !leader.Synced || leader.Err != nil {
		holderNow = identity // not known
	}
	fmt.Fprintf(r.io.Err, "leasehold: leadership of lease %s ended (%s); stopping %s (grace %v)\n",
		ref, endReason(context.Cause(lctx), holderNow, identity), argv[0], r.grace)
	code := c.Stop(r.grace)
	fmt.Fprintf(r.io.Err, "leasehold: %s stopped with status %d\n", argv[0], code)
	if r.exitOnLoss && !errors.Is(context.Cause(lctx), errAppNotReady) {
		st.lost = true
		stopRun()
	}
	return nil
}

// endReason words why a term ended, for the log. A term that the lease's
// record ended is "lost" in the library; say whether someone took the lease
// or it was released (leasehold release, or another tool). holderNow is
// who holds the lease now, "" nobody, self when not known.
func endReason(cause error, holderNow, self string) string {
	switch {
	case errors.Is(cause, holder.ErrReleased):
		return "released"
	case !errors.Is(cause, holder.ErrLost):
		return cause.Error()
	case holderNow == "":
		return "the lease was released by another process"
	case holderNow != self:
		return fmt.Sprintf("%s took the lease", holderNow)
	}
	return cause.Error()
}

// exitStatus returns COMMAND's status as the error that ends leasehold with it.
func exitStatus(code int) error {
	if code == ExitOK {
		return nil
	}
	return withCode(code, errors.New(""))
}
