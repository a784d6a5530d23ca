package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// NonRoot is the user the Leasehold images run as: distroless's "nonroot",
// which deploy/ also names (runAsUser 65532).
const NonRoot = "65532:65532"

// GoBuild compiles the Go package pkg (a path relative to the module root
// root, "./cmd/leasehold") into a static binary out, stripped and without
// local paths, with the given -ldflags additions.
func GoBuild(ctx context.Context, root, pkg, out, ldflags string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w "+ldflags, "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("image: go build %s: %w\n%s", pkg, err, stderr.Bytes())
	}
	return nil
}

// Leasehold is the leasehold CLI image, equivalent to deploy/Dockerfile's:
// the binary at /usr/local/bin/leasehold as entrypoint, user 65532, the CA
// bundle, /tmp. extra adds files (a worker, for example).
func Leasehold(bin string, extra ...File) Spec {
	return Spec{
		Files:      append([]File{{Path: "/usr/local/bin/leasehold", Src: bin}}, extra...),
		User:       NonRoot,
		CACerts:    true,
		Entrypoint: []string{"/usr/local/bin/leasehold"},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=" + CABundle},
		WorkingDir: "/",
	}
}

// Pause is the sandbox (pause) image: bin at /pause as entrypoint.
func Pause(bin string) Spec {
	return Spec{
		Files:      []File{{Path: "/pause", Src: bin}},
		User:       "65535:65535",
		Entrypoint: []string{"/pause"},
	}
}

// BuildTarball compiles pkg from the module root root, wraps it with spec
// (which names the binary's path as "{bin}") and writes the tarball file
// tagged ref. dir holds the compiled binary.
func BuildTarball(ctx context.Context, root, dir, pkg, ldflags, file, ref string, spec func(bin string) Spec) error {
	bin := filepath.Join(dir, filepath.Base(pkg))
	if err := GoBuild(ctx, root, pkg, bin, ldflags); err != nil {
		return err
	}
	img, err := Build(spec(bin))
	if err != nil {
		return err
	}
	return WriteTarball(file, ref, img)
}
