// Package version reports what binary this is: release, commit and Go version.
// Version and Commit are set at build time with
// -ldflags "-X github.com/mqlb/mqlb/internal/version.Version=v0.1.0 -X ...Commit=abc123".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by the linker; see the package comment.
var (
	Version = "dev"
	Commit  = ""
)

// String returns "mqlb VERSION (commit COMMIT, goX.Y.Z linux/amd64)".
func String() string {
	return fmt.Sprintf("mqlb %s (commit %s, %s %s/%s)", Version, commit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// commit is the linker's Commit, else the VCS revision Go recorded, else "unknown".
func commit() string {
	c := Commit
	if c == "" {
		c = vcsRevision()
	}
	if c == "" {
		c = "unknown"
	}
	return c
}

func vcsRevision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	return ""
}
