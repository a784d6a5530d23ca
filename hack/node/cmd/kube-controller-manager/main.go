// Command kube-controller-manager is the upstream kube-controller-manager of the Kubernetes version pinned in
// go.mod, built from the Go module proxy for Leasehold's single-node test cluster.
package main

import (
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client metrics, as upstream registers them
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
	"os"
	_ "time/tzdata" // CronJob time zones
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
