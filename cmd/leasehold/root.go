package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

// Exit codes shared by the commands. A child's own status is passed through
// by `run` and `lock`; these are for what leasehold itself decides.
const (
	ExitOK          = 0
	ExitError       = 1   // bad flags, API or RBAC errors
	ExitNotAcquired = 75  // lock: not acquired (--timeout passed, or held with --wait=false)
	ExitLost        = 76  // run --exit-on-loss / lock: leadership or lock lost, child stopped
	ExitUsage       = 2   // command line could not be parsed
	exitSignalBase  = 128 // a child killed by signal N exits 128+N
)

// IO is where a command reads and writes; tests pass buffers.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
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
			fmt.Fprintln(streams.Err, "leasehold:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(streams.Err, "leasehold:", err)
	if strings.HasPrefix(err.Error(), "unknown command") || strings.Contains(err.Error(), "flag") || strings.Contains(err.Error(), "arg") {
		return ExitUsage
	}
	return ExitError
}

func newRoot(streams IO) *cobra.Command {
	a := &app{io: streams, flags: genericclioptions.NewConfigFlags(true)}
	name := "leasehold"
	if strings.HasPrefix(filepath.Base(os.Args[0]), "kubectl-lease") {
		name = "kubectl lease"
	}
	root := &cobra.Command{
		Use:   name,
		Short: "Leader election and locks on Kubernetes Leases",
		Long: `leasehold runs any command only while it is the leader, runs a command under a
lock, and shows, watches, releases and hands off Leases (coordination.k8s.io/v1).
It is compatible with client-go's leader election: both can share a Lease.`,
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	a.flags.AddFlags(root.PersistentFlags())
	for _, add := range subcommands {
		root.AddCommand(add(a))
	}
	return root
}

// subcommands is filled by each command's file in init, so that commands
// stay in files of their own.
var subcommands []func(*app) *cobra.Command

// restConfig returns the client configuration from the kubeconfig flags,
// with a clear error when there is none.
func (a *app) restConfig() (*rest.Config, error) {
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
	ns, _, err := a.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("namespace: %w", err)
	}
	return ns, nil
}
