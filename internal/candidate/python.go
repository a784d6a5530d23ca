package candidate

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Python is the interpreter of Python candidates: Debian's, where
// python3-kubernetes installs (hack/deps.sh); a python3 earlier in PATH may
// lack the kubernetes client.
const Python = "/usr/bin/python3"

// PythonImpl is the implementation Python candidates report in their events
// (Event.Impl). They are Leasehold members: they send their fencing token
// to the resource they write to and accept --clock-rate, like Go Leasehold
// candidates.
const PythonImpl = "leasehold-python"

// PythonCommand returns how to start a Python candidate (the module
// leasehold.candidate of the repository's python/ directory, found at or
// above dir): Python -m leasehold.candidate, with PYTHONPATH pointing there.
// It takes the flags of Main with --impl elector or lock, and prints the
// same events with impl PythonImpl. It fails, saying why, when the
// directory is not found or the interpreter cannot import the module and
// the kubernetes client.
func PythonCommand(dir string) (Command, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return Command{}, err
	}
	for {
		if _, err := os.Stat(filepath.Join(root, "python", "leasehold", "candidate.py")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			return Command{}, fmt.Errorf("python candidate: no python/leasehold/candidate.py at or above %s", dir)
		}
		root = parent
	}
	c := Command{
		Argv0: []string{Python, "-m", "leasehold.candidate"},
		Env:   []string{"PYTHONPATH=" + filepath.Join(root, "python"), "PYTHONDONTWRITEBYTECODE=1"},
	}
	check := exec.Command(Python, "-c", "import kubernetes, leasehold.candidate")
	check.Env = append(os.Environ(), c.Env...)
	if out, err := check.CombinedOutput(); err != nil {
		return Command{}, fmt.Errorf("python candidate: %s cannot import kubernetes and leasehold.candidate (hack/deps.sh installs python3-kubernetes): %v: %s",
			Python, err, strings.TrimSpace(string(out)))
	}
	return c, nil
}
