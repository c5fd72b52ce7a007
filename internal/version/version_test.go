package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	tests := []struct {
		name string
		info Info
		want string
	}{
		{"release", Info{Version: "v1.2.3", Commit: "abc1234", Date: "2026-01-02T03:04:05Z", Go: "go1.26.0"},
			"v1.2.3 (commit abc1234, built 2026-01-02T03:04:05Z, go1.26.0, " + platform + ")"},
		{"from source", Info{Version: "dev", Go: "go1.26.0"},
			"dev (commit unknown, go1.26.0, " + platform + ")"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.info.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestGetLinkerValues: what -ldflags -X sets is what Get reports, the
// commit cut to 12 characters.
func TestGetLinkerValues(t *testing.T) {
	old := [3]string{Version, Commit, Date}
	t.Cleanup(func() { Version, Commit, Date = old[0], old[1], old[2] })
	Version, Commit, Date = "v9.8.7", strings.Repeat("f", 40), "2026-01-02T03:04:05Z"
	got := Get()
	want := Info{Version: "v9.8.7", Commit: strings.Repeat("f", 12), Date: "2026-01-02T03:04:05Z", Go: runtime.Version()}
	if got != want {
		t.Errorf("Get() = %+v, want %+v", got, want)
	}
}
