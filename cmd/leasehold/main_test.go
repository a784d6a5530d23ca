package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/testenv"
)

// binary is the leasehold binary built once for the tests that run it as a
// user would; binDir also holds kubectl-lease (a copy) and the completion
// helper kubectl_complete-lease for plugin tests.
var binary, binDir string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "leasehold-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	binary = filepath.Join(dir, "leasehold")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building leasehold:", err)
		return 1
	}
	data, err := os.ReadFile(binary)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "kubectl-lease"), data, 0o755)
	}
	if err == nil { // installed next to kubectl-lease, as make build does
		data, err = os.ReadFile("kubectl_complete-lease")
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "kubectl_complete-lease"), data, 0o755)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// result is one finished run of the binary.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the built binary with args against cp (via --kubeconfig unless
// args already hold one) and waits for it, at most a minute.
func cli(t *testing.T, cp *testenv.ControlPlane, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if cp != nil {
		args = append([]string{"--kubeconfig", cp.Kubeconfig}, args...)
	}
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("leasehold %v: %v", args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}
