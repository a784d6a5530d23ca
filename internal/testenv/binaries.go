package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// BinEnv names the environment variable that points at a folder holding
// prebuilt etcd, kube-apiserver and kubectl binaries.
const BinEnv = "LEASEHOLD_CONTROLPLANE_BIN"

// binaries returns the folder with the control-plane binaries, building them
// with hack/controlplane.sh when they are not cached yet.
func binaries(ctx context.Context, opts Options) (string, error) {
	if opts.Binaries != "" {
		return opts.Binaries, nil
	}
	if dir := os.Getenv(BinEnv); dir != "" {
		return dir, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "controlplane.sh"))
	cmd.Dir = root
	cmd.Stdout = &stdout
	cmd.Stderr = opts.Output
	if cmd.Stderr == nil {
		cmd.Stderr = io.Discard
	}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("testenv: building the control plane with hack/controlplane.sh failed: %w (run it by hand to see why)", err)
	}
	dir := strings.TrimSpace(stdout.String())
	if i := strings.LastIndexByte(dir, '\n'); i >= 0 {
		dir = dir[i+1:]
	}
	return dir, nil
}

// ModuleRoot returns the root of the Leasehold source tree: the first folder
// upwards from the working directory, or else from this source file, that
// holds hack/controlplane.sh.
func ModuleRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if _, err := os.Stat(filepath.Join(dir, "hack", "controlplane.sh")); err == nil {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("testenv: cannot find the Leasehold source tree (hack/controlplane.sh); run from inside it or set " + BinEnv)
}

// insecureTLS is used only to poll readiness before the apiserver's
// self-signed certificate exists on disk.
func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // readiness probe on loopback
