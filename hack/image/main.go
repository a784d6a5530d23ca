// Command image builds Leasehold's container images without Docker or a
// registry and writes each as a docker-save tarball, which `docker load -i`,
// `ctr -n k8s.io images import` and `kind load image-archive` accept:
//
//	go run ./hack/image -o bin/leasehold-image.tar -ref leasehold:dev
//	go run ./hack/image -image pause -o pause.tar -ref leasehold.local/pause:1
//
// `make image` runs the first. Run from the repository root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/leasehold/leasehold/internal/image"
)

func main() {
	which := flag.String("image", "leasehold", "which image: leasehold (the CLI, as deploy/Dockerfile builds it) or pause (a pod sandbox)")
	out := flag.String("o", "bin/leasehold-image.tar", "tarball to write")
	ref := flag.String("ref", "leasehold:dev", "image reference the tarball is tagged with")
	ldflags := flag.String("ldflags", "", "extra -ldflags for go build (version stamps)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *which, *out, *ref, *ldflags); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, which, out, ref, ldflags string) error {
	var pkg string
	var spec func(string) image.Spec
	switch which {
	case "leasehold":
		pkg, spec = "./cmd/leasehold", func(bin string) image.Spec { return image.Leasehold(bin) }
	case "pause":
		pkg, spec = "./internal/image/pause", image.Pause
	default:
		return fmt.Errorf("-image %q: want leasehold or pause", which)
	}
	dir, err := os.MkdirTemp("", "leasehold-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := image.BuildTarball(ctx, ".", dir, pkg, ldflags, out, ref, spec); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%s)\n", out, ref)
	return nil
}
