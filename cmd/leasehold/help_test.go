package main

import (
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

// commandPaths lists every command a user can ask help for, as arguments.
func commandPaths() [][]string {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Hidden {
			return
		}
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(newRoot(IO{}), nil)
	return paths
}

// TestHelp: every command's help lists its exit statuses and fits in 80
// columns, under both names of the binary.
func TestHelp(t *testing.T) {
	paths := commandPaths()
	if len(paths) < 14 {
		t.Fatalf("only %d commands found: %q", len(paths), paths)
	}
	for _, bin := range []string{binary, filepath.Join(binDir, "kubectl-lease")} {
		for _, path := range paths {
			// A short HOME, as a user has: the default of --cache-dir is under it.
			r := runBinary(t, []string{"HOME=/home/user"}, bin, append(path, "--help")...).ok(t)
			name := filepath.Base(bin) + " " + strings.Join(path, " ")
			if !strings.Contains(r.stdout, "\nExit status:\n  ") {
				t.Errorf("%s --help lists no exit status:\n%s", name, r.stdout)
			}
			for _, l := range strings.Split(r.stdout, "\n") {
				if n := utf8.RuneCountInString(l); n > helpWidth {
					t.Errorf("%s --help: line of %d columns:\n%s", name, n, l)
				}
			}
		}
	}
}

// TestHelpSays: what the help of run, lock and describe promises.
func TestHelpSays(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		want []string
	}{
		{"run", []string{"stdin, stdout and stderr\npassed through"}},
		{"lock", []string{"stdin, stdout and stderr\npassed through"}},
		{"describe", []string{"leasehold run records\nLeaderElection Events", "when RBAC lets it\ncreate events"}},
		{"holder", []string{"\n  3  not held"}},
		{"get", []string{"-o wide", "custom-columns", "--show-labels", "-w, --watch"}},
	} {
		r := cli(t, nil, tc.cmd, "--help").ok(t)
		for _, w := range tc.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("%s --help does not say %q:\n%s", tc.cmd, w, r.stdout)
			}
		}
	}
}
