// Command kubelet is the upstream kubelet of the Kubernetes version pinned in
// go.mod, built from the Go module proxy for Leasehold's single-node test cluster.
package main

import (
	"context"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client metrics, as upstream registers them
	"k8s.io/kubernetes/cmd/kubelet/app"
	"os"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
