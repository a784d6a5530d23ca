package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Shell completion (`leasehold completion bash`, and `kubectl lease <TAB>`
// through the kubectl_complete-lease helper): Lease names and namespaces
// from the cluster the kubeconfig flags on the command line name, contexts,
// clusters and users from the kubeconfig, and the values of -o.

// completionTimeout bounds the cluster requests of one completion: a
// completion that cannot reach the cluster offers nothing rather than hang
// the shell.
const completionTimeout = 5 * time.Second

// registerCompletions completes the kubeconfig flags of every command, and
// the Lease names of the commands that take one and do not complete it
// themselves.
func registerCompletions(root *cobra.Command, a *app) {
	_ = root.RegisterFlagCompletionFunc("namespace", completeNamespaces(a))
	kubeconfigNames := map[string]func(*kubeconfigLists) []string{
		"context": func(k *kubeconfigLists) []string { return k.contexts },
		"cluster": func(k *kubeconfigLists) []string { return k.clusters },
		"user":    func(k *kubeconfigLists) []string { return k.users },
	}
	for flag, names := range kubeconfigNames {
		_ = root.RegisterFlagCompletionFunc(flag, func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return names(readKubeconfigLists(a.flags)), cobra.ShellCompDirectiveNoFileComp
		})
	}
	for _, c := range root.Commands() {
		switch c.Name() {
		case "release", "handoff", "lock":
			if c.ValidArgsFunction == nil {
				c.ValidArgsFunction = completeLeaseNames(a, 1)
			}
		case "run":
			if c.Flag("lease") != nil {
				_ = c.RegisterFlagCompletionFunc("lease", func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
					return completeLeaseNames(a, 1)(cmd, nil, toComplete)
				})
			}
		}
	}
}

// completeLeaseNames completes the names of the Leases in the namespace
// (also as lease/NAME), leaving out those already given; max is how many
// names the command takes, -1 for any number.
func completeLeaseNames(a *app, max int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if max >= 0 && len(args) >= max {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		prefix := ""
		if typ, rest, ok := strings.Cut(toComplete, "/"); ok {
			prefix, toComplete = typ+"/", rest
		}
		ctx, cancel := completionContext(cmd)
		defer cancel()
		cs, err := a.clientset()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ns, err := a.namespace()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		list, err := cs.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		given, _ := leaseArgs(args)
		var out []cobra.Completion
		for _, l := range list.Items {
			if strings.HasPrefix(l.Name, toComplete) && !slices.Contains(given, l.Name) {
				out = append(out, prefix+l.Name)
			}
		}
		sort.Strings(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeNamespaces completes -n with the namespaces of the cluster.
func completeNamespaces(a *app) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		ctx, cancel := completionContext(cmd)
		defer cancel()
		cs, err := a.clientset()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, ns := range list.Items {
			if strings.HasPrefix(ns.Name, toComplete) {
				out = append(out, ns.Name)
			}
		}
		sort.Strings(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeOutput completes -o: the table formats, then every format of
// cli-runtime's printers and custom columns. Those that take an argument end
// in "=", and the shell adds no space after them.
func completeOutput(pf *genericclioptions.PrintFlags) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		withArg := 0
		for _, f := range append(append([]string{"wide"}, pf.AllowedFormats()...), "custom-columns", "custom-columns-file") {
			switch f {
			case "wide", "json", "yaml", "kyaml", "name":
			default:
				f += "="
			}
			if strings.HasPrefix(f, toComplete) {
				out = append(out, f)
				if strings.HasSuffix(f, "=") {
					withArg++
				}
			}
		}
		if len(out) > 0 && withArg == len(out) {
			return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func completionContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, completionTimeout)
}

// kubeconfigLists are the names a kubeconfig defines.
type kubeconfigLists struct{ contexts, clusters, users []string }

func readKubeconfigLists(flags *genericclioptions.ConfigFlags) *kubeconfigLists {
	k := &kubeconfigLists{}
	raw, err := flags.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return k
	}
	for name := range raw.Contexts {
		k.contexts = append(k.contexts, name)
	}
	for name := range raw.Clusters {
		k.clusters = append(k.clusters, name)
	}
	for name := range raw.AuthInfos {
		k.users = append(k.users, name)
	}
	sort.Strings(k.contexts)
	sort.Strings(k.clusters)
	sort.Strings(k.users)
	return k
}

// newCompletionCmd is `leasehold completion SHELL`, in place of cobra's
// default, with help that fits helpWidth and explains the kubectl plugin.
func newCompletionCmd(a *app) *cobra.Command {
	var noDescriptions bool
	bin := strings.ReplaceAll(cliName(), " ", "-")
	cmd := &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print the completion script for bash, zsh, fish or powershell",
		Long: fmt.Sprintf(`completion prints the script that makes the shell complete %[1]s's commands,
flags, Lease names and namespaces (asking the cluster) and output formats.
Load it into the current shell, or save it where the shell finds completions:

  bash        source <(%[1]s completion bash)
              %[1]s completion bash > /etc/bash_completion.d/%[1]s
  zsh         source <(%[1]s completion zsh)
              %[1]s completion zsh > "${fpath[1]}/_%[1]s"
  fish        %[1]s completion fish | source
  powershell  %[1]s completion powershell | Out-String | iex

bash needs the bash-completion package; zsh needs "autoload -U compinit;
compinit" in ~/.zshrc.

As the kubectl plugin, "kubectl lease" is completed by kubectl's own
completion, which runs kubectl_complete-lease from PATH (kubectl 1.26 or
newer): install it next to kubectl-lease; make build puts both in bin/.`, bin),
		Example:   fmt.Sprintf("  source <(%[1]s completion bash)\n  %[1]s completion zsh --no-descriptions > _%[1]s", bin),
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		ValidArgs: []cobra.Completion{"bash", "zsh", "fish", "powershell"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out, desc := cmd.Root(), a.io.Out, !noDescriptions
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, desc)
			case "zsh":
				if desc {
					return root.GenZshCompletion(out)
				}
				return root.GenZshCompletionNoDesc(out)
			case "fish":
				return root.GenFishCompletion(out, desc)
			default:
				if desc {
					return root.GenPowerShellCompletionWithDesc(out)
				}
				return root.GenPowerShellCompletion(out)
			}
		},
	}
	cmd.Flags().BoolVar(&noDescriptions, "no-descriptions", false, "complete without the descriptions of commands and flags")
	return cmd
}
