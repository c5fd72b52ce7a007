package config

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// maxNameLen is the longest agent or target name.
const maxNameLen = 63

// checkName returns why s is not a valid agent or target name, or "" when
// it is: 1 to 63 characters of [A-Za-z0-9._-], the first a letter or digit.
// pkg/auth applies the same rule to agent names; this copy keeps the import
// direction one way.
func checkName(s string) string {
	switch {
	case s == "":
		return "missing"
	case len(s) > maxNameLen:
		return fmt.Sprintf("invalid name: longer than %d characters", maxNameLen)
	case !isAlnum(s[0]):
		return "invalid name: must start with a letter or digit"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return "invalid name: only letters, digits, '.', '_' and '-' are allowed"
		}
	}
	return ""
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// addrRule says what checkAddress accepts.
type addrRule int

const (
	// dialAddr is an address to connect to: a host and a port 1-65535.
	dialAddr addrRule = iota
	// listenAddr is an address to listen on: the host may be empty (all
	// interfaces) and port 0 picks a free port.
	listenAddr
)

// checkAddress returns why s is not a valid host:port under rule, or "".
func checkAddress(s string, rule addrRule) string {
	if s == "" {
		return "missing"
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		switch {
		case errors.As(err, &ae) && strings.Contains(ae.Err, "missing port"):
			return "missing port (want host:port)"
		case errors.As(err, &ae) && strings.Contains(ae.Err, "too many colons"):
			return "invalid address (write an IPv6 address in brackets: [::1]:5432)"
		}
		return "invalid address (want host:port)"
	}
	if host == "" && rule == dialAddr {
		return "missing host (want host:port)"
	}
	if strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r == '/' || r == 0x7f }) {
		return "invalid host"
	}
	min := 1
	if rule == listenAddr {
		min = 0
	}
	if !validPort(port, min) {
		return fmt.Sprintf("invalid port (want a number from %d to 65535)", min)
	}
	return ""
}

// validPort reports whether port is a decimal number from min to 65535.
// Service names ("postgresql") are refused: what the agent dials must not
// depend on the host's /etc/services.
func validPort(port string, min int) bool {
	if port == "" || len(port) > 5 {
		return false
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= min && n <= 65535
}

// hostOf returns the host part of a host:port address, or "" when it has
// none.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return host
}

// checkServerName returns why s is not a name to check a certificate for
// (a host name or an IP address, without a port), or "".
func checkServerName(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == '/' || r == 0x7f }) {
		return "invalid name (want a host name or IP address)"
	}
	if strings.Contains(s, ":") {
		if _, err := netip.ParseAddr(s); err != nil {
			return "invalid name (want a host name or IP address, without a port)"
		}
	}
	return ""
}

// checkAdminListen returns why s is not an acceptable admin API address, or
// "": a loopback IP address with a port, or "unix:" and a socket path.
func checkAdminListen(s string) string {
	if path, ok := strings.CutPrefix(s, unixPrefix); ok {
		if path == "" {
			return "missing socket path after \"unix:\""
		}
		return ""
	}
	const never = "the admin API is never exposed beyond loopback: use a loopback IP address " +
		"(127.0.0.1:7444, [::1]:7444) or unix:/path/to.sock"
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "invalid address; " + never
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return "not a loopback address; " + never
	}
	if !validPort(port, 0) {
		return "invalid port (want a number from 0 to 65535)"
	}
	return ""
}

// checkPrivateKeyPEM returns why s is not a PEM private key, or "". The
// reason never quotes s.
func checkPrivateKeyPEM(s string) string {
	if s == "" {
		return "missing"
	}
	block, _ := pem.Decode([]byte(s))
	if block == nil || !strings.HasSuffix(block.Type, "PRIVATE KEY") {
		return "not a PEM private key (want a -----BEGIN PRIVATE KEY----- block)"
	}
	return ""
}

// checkCertificatesPEM returns why s is not one or more PEM certificates,
// or "".
func checkCertificatesPEM(s string) string {
	rest := []byte(s)
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		n++
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Sprintf("certificate %d: %v", n, err)
		}
	}
	if n == 0 {
		return "no PEM certificate found (want a -----BEGIN CERTIFICATE----- block)"
	}
	return ""
}
