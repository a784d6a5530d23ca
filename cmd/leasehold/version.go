package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Version and Commit may be stamped at build time (`make build` does):
//
//	go build -ldflags "-X main.Version=v1.2.3 -X main.Commit=0123abc" ./cmd/leasehold
//
// When they are not, the version is the module version and the commit the
// VCS revision that the Go toolchain records in the binary, if it did.
var (
	Version = ""
	Commit  = ""
)

// buildVersion is what `leasehold version` prints.
type buildVersion struct {
	Version    string // v1.2.3, or (devel) for a build from a source tree
	Commit     string // "" when unknown
	CommitTime string // RFC 3339, "" when unknown
	Modified   bool   // built from a tree with uncommitted changes
	Go         string // go1.26.0 linux/amd64
}

// readBuildVersion combines the stamped values with the build information
// (info is nil when the binary carries none).
func readBuildVersion(stampedVersion, stampedCommit string, info *debug.BuildInfo) buildVersion {
	v := buildVersion{Version: stampedVersion, Commit: stampedCommit, Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if info != nil {
		if v.Version == "" && info.Main.Version != "" {
			v.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if v.Commit == "" {
					v.Commit = s.Value
				}
			case "vcs.time":
				if stampedCommit == "" {
					v.CommitTime = s.Value
				}
			case "vcs.modified":
				if stampedCommit == "" {
					v.Modified = s.Value == "true"
				}
			}
		}
		if info.GoVersion != "" {
			v.Go = info.GoVersion + " " + runtime.GOOS + "/" + runtime.GOARCH
		}
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	return v
}

// String is one line: "v1.2.3, commit 0123abc (2026-01-02T03:04:05Z,
// modified), go1.26.0 linux/amd64".
func (v buildVersion) String() string {
	commit := "commit unknown"
	if v.Commit != "" {
		commit = "commit " + v.Commit
		var about []string
		if v.CommitTime != "" {
			about = append(about, v.CommitTime)
		}
		if v.Modified {
			about = append(about, "modified")
		}
		if len(about) > 0 {
			commit += " (" + strings.Join(about, ", ") + ")"
		}
	}
	return fmt.Sprintf("%s, %s, %s", v.Version, commit, v.Go)
}

// buildInfo is the build information in the binary, nil if there is none.
func buildInfo() *debug.BuildInfo {
	info, _ := debug.ReadBuildInfo()
	return info
}

// versionLine is what `version` and `--version` print.
func versionLine() string {
	return cliName() + " version " + readBuildVersion(Version, Commit, buildInfo()).String()
}

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit it was built from and the Go version",
		Long: `version prints the version of leasehold, the VCS commit it was built from and
the Go toolchain and platform, on one line (also --version). A binary built
without version stamps or VCS information says "(devel)" and "commit unknown".`,
		Example:           fmt.Sprintf("  %[1]s version\n  %[1]s --version", cliName()),
		Args:              cobra.NoArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(a.io.Out, versionLine())
			return err
		},
	}
}
