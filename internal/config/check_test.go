package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string // want is a substring of the reason; "" means valid
	}{
		{"warehouse", ""},
		{"a", ""},
		{"0db", ""},
		{"acme-bastion.eu_1", ""},
		{strings.Repeat("x", 63), ""},
		{"", "missing"},
		{strings.Repeat("x", 64), "longer than 63"},
		{"-a", "start with a letter or digit"},
		{".a", "start with a letter or digit"},
		{"_a", "start with a letter or digit"},
		{"a b", "only letters, digits"},
		{"a/b", "only letters, digits"},
		{"ünï", "start with a letter or digit"},
		{"aü", "only letters, digits"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got := checkName(tt.in)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("checkName(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCheckAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		rule addrRule
		want string
	}{
		{"db:5432", dialAddr, ""},
		{"10.0.0.5:1", dialAddr, ""},
		{"[fd00::5]:65535", dialAddr, ""},
		{"db.internal.example.com:05432", dialAddr, ""},
		{"", dialAddr, "missing"},
		{"db", dialAddr, "missing port"},
		{"db:", dialAddr, "invalid port"},
		{":5432", dialAddr, "missing host"},
		{"db:0", dialAddr, "invalid port (want a number from 1 to 65535)"},
		{"db:65536", dialAddr, "invalid port"},
		{"db:-1", dialAddr, "invalid port"},
		{"db:+1", dialAddr, "invalid port"},
		{"db:postgresql", dialAddr, "invalid port"},
		{"db:123456", dialAddr, "invalid port"},
		{"fd00::5:5432", dialAddr, "brackets"},
		{"[fd00::5:5432", dialAddr, "invalid address"},
		{"d b:5432", dialAddr, "invalid host"},
		{"tcp://db:5432", dialAddr, "invalid"},
		{":7443", listenAddr, ""},
		{"0.0.0.0:0", listenAddr, ""},
		{"[::]:7443", listenAddr, ""},
		{"7443", listenAddr, "missing port"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got := checkAddress(tt.in, tt.rule)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("checkAddress(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCheckAdminListen(t *testing.T) {
	t.Parallel()
	const never = "never exposed beyond loopback"
	tests := []struct {
		in, want string
	}{
		{"127.0.0.1:7444", ""},
		{"127.255.0.9:7444", ""},
		{"[::1]:7444", ""},
		{"[::ffff:127.0.0.1]:7444", ""},
		{"127.0.0.1:0", ""},
		{"unix:/run/admin.sock", ""},
		{"unix:admin.sock", ""},
		{"unix:", "missing socket path"},
		{"0.0.0.0:7444", never},
		{":7444", never},
		{"[::]:7444", never},
		{"192.168.1.10:7444", never},
		{"localhost:7444", never},
		{"127.0.0.1", never},
		{"127.0.0.1:http", "invalid port"},
		{"unix-ish:/x", never},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got := checkAdminListen(tt.in)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("checkAdminListen(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCheckPEM(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, got, want string
	}{
		{"key", checkPrivateKeyPEM(testKeyPEM), ""},
		{"EC key", checkPrivateKeyPEM("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), ""},
		{"certificate as key", checkPrivateKeyPEM(testCAPEM), "not a PEM private key"},
		{"no key", checkPrivateKeyPEM(""), "missing"},
		{"CA", checkCertificatesPEM(testCAPEM), ""},
		{"CA bundle", checkCertificatesPEM(testCAPEM + testCAPEM), ""},
		{"key as CA", checkCertificatesPEM(testKeyPEM), "no PEM certificate found"},
		{"corrupt CA", checkCertificatesPEM(testCAPEM + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "certificate 2: x509"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.want == "") != (tt.got == "") || !strings.Contains(tt.got, tt.want) {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"adress", "address"},
		{"Address", "address"},
		{"max_session", "max_sessions"},
		{"dial-timeout", "dial_timeout"},
		{"completely_different", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			typ := map[string]any{"adress": AgentServer{}, "Address": AgentServer{}}[tt.in]
			if typ == nil {
				typ = AgentSelf{}
			}
			if got := suggest(reflect.TypeOf(typ), tt.in); got != tt.want {
				t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
