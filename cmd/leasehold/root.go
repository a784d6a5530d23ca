package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Exit codes shared by the commands. A child's own status is passed through
// by `run` and `lock`; these are for what leasehold itself decides.
const (
	ExitOK          = 0
	ExitError       = 1   // bad flags, API or RBAC errors
	ExitNotAcquired = 75  // lock: not acquired (--timeout passed, or held with --wait=false)
	ExitLost        = 76  // run --exit-on-loss / lock: leadership or lock lost, child stopped
	ExitUnavailable = 69  // lock: the Kubernetes API could not be reached (EX_UNAVAILABLE)
	ExitUsage       = 2   // command line could not be parsed
	exitSignalBase  = 128 // a child killed by signal N exits 128+N
)

// IO is where a command reads and writes; tests pass buffers.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	// Notify, when set, relays signals to a channel (signal.Notify) until
	// the function it returns is called; run and lock use it to pass
	// signals on to COMMAND. nil (tests in-process): nothing is relayed.
	Notify notifyFunc
}

// app is what every subcommand shares: the kubeconfig flags (exactly
// kubectl's) and the IO streams.
type app struct {
	io    IO
	flags *genericclioptions.ConfigFlags
}

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode makes err end the process with code.
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// Execute runs the CLI with args and returns the process exit code.
func Execute(ctx context.Context, args []string, streams IO) int {
	root := newRoot(streams)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(streams.Err, cliName()+":", ee.err)
		}
		return ee.code
	}
	// Errors the commands return carry their code (withCode); what is left
	// comes from cobra's parsing of the command line.
	fmt.Fprintln(streams.Err, cliName()+":", err)
	return ExitUsage
}

// newRoot builds the command tree. Every subcommand is listed here, built by
// the constructor in its own file; nothing is registered from elsewhere.
func newRoot(streams IO) *cobra.Command {
	a := &app{io: streams, flags: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use: strings.ReplaceAll(cliName(), " ", "-"),
		// As a kubectl plugin, help and usage say "kubectl lease".
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: cliName()},
		Short:       "Leader election and locks on Kubernetes Leases",
		Long: `leasehold runs any command only while it is the leader, runs a command under
a lock, and shows, watches, releases and hands off Leases
(coordination.k8s.io/v1). It is compatible with client-go's leader election:
both can share a Lease. Each command's --help lists its exit statuses.`,
		Version:       readBuildVersion(Version, Commit, buildInfo()).String(), // --version (see version.go)
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	a.flags.AddFlags(root.PersistentFlags())
	addVerbosityFlag(root.PersistentFlags())
	for _, newCmd := range []func(*app) *cobra.Command{
		newRunCmd,
		newLockCmd,
		newGetCmd,
		newListCmd,
		newDescribeCmd,
		newWatchCmd,
		newHandoffCmd,
		newReleaseCmd,
		newDemoCmd,
		newHolderCmd,
		newVersionCmd,
		newCompletionCmd,
	} {
		root.AddCommand(newCmd(a))
	}
	registerCompletions(root, a)
	finishHelp(root)
	markRuntimeErrors(root)
	return root
}

// markRuntimeErrors gives every error a command's RunE returns without a
// code the code ExitError, so that Execute can tell them from cobra's own
// command-line errors (ExitUsage).
func markRuntimeErrors(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			err := run(cmd, args)
			var ee *exitError
			if err != nil && !errors.As(err, &ee) {
				return withCode(ExitError, err)
			}
			return err
		}
	}
	for _, sub := range c.Commands() {
		markRuntimeErrors(sub)
	}
}

// restConfig returns the client configuration from the kubeconfig flags,
// with a clear error when there is none.
func (a *app) restConfig() (*rest.Config, error) {
	if err := a.checkConfigFlags(); err != nil {
		return nil, err
	}
	if a.noCluster() {
		return nil, errors.New("no cluster configured: set --kubeconfig or KUBECONFIG, or create ~/.kube/config, or run in a pod")
	}
	cfg, err := a.flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("no usable cluster configuration (set --kubeconfig, KUBECONFIG, or run in a pod): %w", err)
	}
	return cfg, nil
}

// clientset returns a clientset from the kubeconfig flags.
func (a *app) clientset() (*kubernetes.Clientset, error) {
	cfg, err := a.restConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// namespace returns -n, else the kubeconfig context's namespace, else
// "default" (in a pod: the pod's namespace).
func (a *app) namespace() (string, error) {
	if err := a.checkConfigFlags(); err != nil {
		return "", err
	}
	ns, _, err := a.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("namespace: %w", err)
	}
	return ns, nil
}

// noCluster reports that nothing names a cluster: kubectl's flags would
// otherwise fall back to http://localhost:8080 and fail with "connection
// refused", which explains nothing.
func (a *app) noCluster() bool {
	if a.flags.APIServer != nil && *a.flags.APIServer != "" {
		return false
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		return false
	}
	raw, err := a.flags.ToRawKubeConfigLoader().RawConfig()
	return err == nil && len(raw.Clusters) == 0
}
