// Package python_test runs the Python library's tests (python/tests, with
// pytest) from `go test ./...`: with -short only the unit tests; otherwise
// also the integration tests, against a real kube-apiserver started here,
// next to Go Leasehold and client-go candidate processes (this test binary
// re-executed as internal/candidate) and the leasehold CLI.
package python_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/candidate"
	"github.com/leasehold/leasehold/internal/testenv"
)

// python is Debian's interpreter, where python3-kubernetes and python3-pytest
// install (hack/deps.sh); a python3 earlier in PATH may lack them.
const python = "/usr/bin/python3"

// candidateEnv makes this test binary run as a Go candidate process.
const candidateEnv = "LEASEHOLD_TEST_CANDIDATE"

func TestMain(m *testing.M) {
	if os.Getenv(candidateEnv) == "1" && len(os.Args) > 1 && os.Args[1] == candidate.Arg {
		os.Exit(candidate.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestPython runs pytest on python/tests and fails if any test fails. Its
// output is the test log.
func TestPython(t *testing.T) {
	needPython(t)
	root := repoRoot(t)
	env := []string{"PYTHONPATH=" + filepath.Join(root, "python"), "PYTHONDONTWRITEBYTECODE=1", "KUBECONFIG="}
	if !testing.Short() {
		cp := testenv.Start(t)
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		env = append(env, "KUBECONFIG="+cp.Kubeconfig, "LEASEHOLD_GO_CANDIDATE="+self, "LEASEHOLD_BIN="+buildLeasehold(t, root))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--durations=5", "python/tests")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("pytest output:\n%s", out)
	if err != nil {
		t.Fatalf("pytest: %v", err)
	}
}

func needPython(t *testing.T) {
	t.Helper()
	out, err := exec.Command(python, "-c", "import kubernetes, pytest, yaml").CombinedOutput()
	if err != nil {
		t.Skipf("%s cannot import kubernetes, pytest and yaml (hack/deps.sh installs python3-kubernetes and python3-pytest): %v\n%s",
			python, err, strings.TrimSpace(string(out)))
	}
}

func buildLeasehold(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "leasehold")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/leasehold")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/leasehold: %v\n%s", err, out)
	}
	return bin
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}
