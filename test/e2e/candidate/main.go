// Command candidate is the benchmark's candidate process (internal/candidate)
// as a container image's entrypoint, for elector pods on the test cluster.
package main

import (
	"os"

	"github.com/leasehold/leasehold/internal/candidate"
)

func main() {
	os.Exit(candidate.Main(os.Args[1:], os.Stdout, os.Stderr))
}
