// Command kube-proxy is the upstream kube-proxy of the Kubernetes version pinned in
// go.mod, built from the Go module proxy for Leasehold's single-node test cluster.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client metrics, as upstream registers them
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
