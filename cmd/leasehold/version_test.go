package main

import (
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersion: `version` and `--version` print the same line; -v is no
// longer the version but the verbosity, as in kubectl.
func TestVersion(t *testing.T) {
	line := regexp.MustCompile(`^leasehold version \S+, commit (unknown|[0-9a-f]+( \(.*\))?), go1\.\d+\S* \w+/\w+\n$`)
	v := cli(t, nil, "version").ok(t)
	if !line.MatchString(v.stdout) {
		t.Errorf("version: %q", v.stdout)
	}
	if got := cli(t, nil, "--version").ok(t).stdout; got != v.stdout {
		t.Errorf("--version %q, version %q", got, v.stdout)
	}
	if got := runBinary(t, nil, filepath.Join(binDir, "kubectl-lease"), "version").ok(t).stdout; got != "kubectl lease"+strings.TrimPrefix(v.stdout, "leasehold") {
		t.Errorf("kubectl-lease version: %q", got)
	}
	cli(t, nil, "-v").fails(t, ExitUsage, "flag needs an argument")
}

func TestReadBuildVersion(t *testing.T) {
	goVersion := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	vcs := &debug.BuildInfo{
		GoVersion: runtime.Version(),
		Main:      debug.Module{Path: "github.com/leasehold/leasehold", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name                   string
		stampVersion, stampSHA string
		info                   *debug.BuildInfo
		want                   string
	}{
		{"no build information", "", "", nil, "(devel), commit unknown, " + goVersion},
		{"built without VCS information", "", "", &debug.BuildInfo{GoVersion: runtime.Version(), Main: debug.Module{Version: "(devel)"}}, "(devel), commit unknown, " + goVersion},
		{"module version and VCS", "", "", vcs, "v1.2.3, commit 0123456789abcdef0123456789abcdef01234567 (2026-01-02T03:04:05Z, modified), " + goVersion},
		{"stamped at build time", "v9.8.7", "abc123", vcs, "v9.8.7, commit abc123, " + goVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readBuildVersion(tc.stampVersion, tc.stampSHA, tc.info).String(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
