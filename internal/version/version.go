// Package version tells which release of tunnel-agent or tunnel-server is
// running. Release builds (packaging/release.sh) set Version, Commit and
// Date with -ldflags:
//
//	-X github.com/tunnelrelay/tunnel/internal/version.Version=v1.2.3
//	-X github.com/tunnelrelay/tunnel/internal/version.Commit=abc1234
//	-X github.com/tunnelrelay/tunnel/internal/version.Date=2026-01-02T03:04:05Z
//
// Other builds take the commit from the Go build information when the
// toolchain recorded it, and have no build date.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

var (
	// Version is the release; "dev" for builds from source.
	Version = "dev"
	// Commit is the source revision, when known.
	Commit = ""
	// Date is when the binary was built (RFC 3339, UTC), when known.
	Date = ""
)

// Info is the version information of a binary.
type Info struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Date    string `json:"date,omitempty"`
	Go      string `json:"go"`
}

// Get returns the running binary's version information.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, Date: Date, Go: runtime.Version()}
	if info.Commit == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					info.Commit = s.Value
				}
			}
		}
	}
	if len(info.Commit) > 12 {
		info.Commit = info.Commit[:12]
	}
	return info
}

// String formats the information for `version` commands and logs.
func (i Info) String() string {
	commit := i.Commit
	if commit == "" {
		commit = "unknown"
	}
	built := ""
	if i.Date != "" {
		built = ", built " + i.Date
	}
	return fmt.Sprintf("%s (commit %s%s, %s, %s/%s)", i.Version, commit, built, i.Go, runtime.GOOS, runtime.GOARCH)
}
