package store

import (
	"errors"
	"testing"
)

func TestAgentValidate(t *testing.T) {
	tests := []struct {
		name  string
		agent Agent
		ok    bool
	}{
		{"Valid", Agent{Name: "acme-bastion", Fingerprint: "sha256:x"}, true},
		{"UnicodeName", Agent{Name: "büro", Fingerprint: "sha256:x"}, true},
		{"InnerSpace", Agent{Name: "acme bastion", Fingerprint: "sha256:x"}, true},
		{"EmptyName", Agent{Fingerprint: "sha256:x"}, false},
		{"TrailingSpace", Agent{Name: "acme ", Fingerprint: "sha256:x"}, false},
		{"Tab", Agent{Name: "ac\tme", Fingerprint: "sha256:x"}, false},
		{"Delete", Agent{Name: "ac\x7fme", Fingerprint: "sha256:x"}, false},
		{"BlankFingerprint", Agent{Name: "acme", Fingerprint: " "}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkValid(t, tt.agent.Validate(), tt.ok)
		})
	}
}

func TestRouteValidate(t *testing.T) {
	valid := Route{Name: "warehouse", Agent: "acme", Target: "pg", Listen: "127.0.0.1:5432"}
	with := func(change func(r *Route)) Route {
		r := valid
		change(&r)
		return r
	}
	tests := []struct {
		name  string
		route Route
		ok    bool
	}{
		{"Valid", valid, true},
		{"AnyAddress", with(func(r *Route) { r.Listen = ":5432" }), true},
		{"IPv6Listen", with(func(r *Route) { r.Listen = "[::1]:5432" }), true},
		{"HostnameListen", with(func(r *Route) { r.Listen = "localhost:5432" }), true},
		{"Allow", with(func(r *Route) { r.Allow = []string{"10.0.0.0/8", "::/0", "192.0.2.1/32"} }), true},
		{"MaxSessions", with(func(r *Route) { r.MaxSessions = 100 }), true},
		{"EmptyName", with(func(r *Route) { r.Name = "" }), false},
		{"EmptyAgent", with(func(r *Route) { r.Agent = "" }), false},
		{"BlankTarget", with(func(r *Route) { r.Target = "  " }), false},
		{"ListenNoPort", with(func(r *Route) { r.Listen = "127.0.0.1" }), false},
		{"ListenEmpty", with(func(r *Route) { r.Listen = "" }), false},
		{"AllowEmptyEntry", with(func(r *Route) { r.Allow = []string{""} }), false},
		{"AllowBareIP", with(func(r *Route) { r.Allow = []string{"10.0.0.1"} }), false},
		{"AllowBadBits", with(func(r *Route) { r.Allow = []string{"10.0.0.0/33"} }), false},
		{"NegativeMaxSessions", with(func(r *Route) { r.MaxSessions = -1 }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkValid(t, tt.route.Validate(), tt.ok)
		})
	}
}

func checkValid(t *testing.T, err error, ok bool) {
	t.Helper()
	switch {
	case ok && err != nil:
		t.Errorf("Validate: %v, want nil", err)
	case !ok && !errors.Is(err, ErrInvalid):
		t.Errorf("Validate = %v, want an error wrapping ErrInvalid", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"DefaultBackend", Config{Path: "x.db"}, true},
		{"SQLite", Config{Backend: BackendSQLite, Path: "x.db"}, true},
		{"NoPath", Config{Backend: BackendSQLite}, false},
		{"UnknownBackend", Config{Backend: "postgres", Path: "x.db"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkValid(t, tt.cfg.Validate(), tt.ok)
		})
	}
}
