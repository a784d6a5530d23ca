// Command kubectl is the upstream kubectl at the control plane's version, so the
// tests and the demo never depend on whatever kubectl a machine happens to have.
package main

import (
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	root := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(root); err != nil {
		cmdutil.CheckErr(err)
	}
}
