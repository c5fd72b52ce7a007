package store

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Validate reports whether a can be stored. The store is the last line of
// defence, so it checks only what would make a stored agent useless or
// dangerous: a fingerprint is required, and the name must be non-empty,
// without leading or trailing space and without control characters (the same
// rule applies to route names).
func (a Agent) Validate() error {
	if err := validateName("agent name", a.Name); err != nil {
		return err
	}
	if strings.TrimSpace(a.Fingerprint) == "" {
		return fmt.Errorf("agent %q: fingerprint is empty: %w", a.Name, ErrInvalid)
	}
	return nil
}

// Validate reports whether r can be stored. Allow entries must parse as CIDRs
// (such as 10.0.0.0/8): an entry the route listener could not parse must never
// be stored and later read as "allow everything".
func (r Route) Validate() error {
	if err := validateName("route name", r.Name); err != nil {
		return err
	}
	if err := validateName(fmt.Sprintf("route %q: agent name", r.Name), r.Agent); err != nil {
		return err
	}
	if strings.TrimSpace(r.Target) == "" {
		return fmt.Errorf("route %q: target is empty: %w", r.Name, ErrInvalid)
	}
	if _, _, err := net.SplitHostPort(r.Listen); err != nil {
		return fmt.Errorf("route %q: listen address %q is not host:port (%v): %w", r.Name, r.Listen, err, ErrInvalid)
	}
	for i, cidr := range r.Allow {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			return fmt.Errorf("route %q: allow[%d] %q is not a CIDR such as 10.0.0.0/8: %w", r.Name, i, cidr, ErrInvalid)
		}
	}
	switch r.Protocol {
	case "", ProtocolTCP, ProtocolPostgres, ProtocolMySQL:
	default:
		return fmt.Errorf("route %q: protocol %q is not %q, %q or %q: %w", r.Name, r.Protocol,
			ProtocolTCP, ProtocolPostgres, ProtocolMySQL, ErrInvalid)
	}
	if r.MaxSessions < 0 {
		return fmt.Errorf("route %q: max sessions %d is negative (0 means unlimited): %w", r.Name, r.MaxSessions, ErrInvalid)
	}
	return nil
}

// validateName rejects names that could not be typed back on a command line
// or would print misleadingly; what says which name it is.
func validateName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%s is empty: %w", what, ErrInvalid)
	}
	if strings.TrimSpace(name) != name {
		return fmt.Errorf("%s %q has leading or trailing space: %w", what, name, ErrInvalid)
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%s %q contains a control character: %w", what, name, ErrInvalid)
		}
	}
	return nil
}

// Validate reports whether t can be stored: an id, a valid agent name, a
// 32-byte hash and an expiry after its creation are required.
func (t EnrollToken) Validate() error {
	if strings.TrimSpace(t.ID) == "" {
		return fmt.Errorf("enrollment token: id is empty: %w", ErrInvalid)
	}
	if err := validateName(fmt.Sprintf("enrollment token %q: agent name", t.ID), t.Agent); err != nil {
		return err
	}
	if len(t.Hash) != 32 {
		return fmt.Errorf("enrollment token %q: hash is %d bytes, want 32 (SHA-256): %w", t.ID, len(t.Hash), ErrInvalid)
	}
	if t.ExpiresAt.IsZero() {
		return fmt.Errorf("enrollment token %q: no expiry: %w", t.ID, ErrInvalid)
	}
	if !t.CreatedAt.IsZero() && !t.ExpiresAt.After(t.CreatedAt) {
		return fmt.Errorf("enrollment token %q: expires before it is created: %w", t.ID, ErrInvalid)
	}
	return nil
}

// withDefaults returns r with the defaults AddRoute documents filled in.
func (r Route) withDefaults(now time.Time) Route {
	if r.Protocol == "" {
		r.Protocol = ProtocolTCP
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now
	}
	return r
}

// withDefaults returns a with the defaults AddAgent documents filled in.
func (a Agent) withDefaults(now time.Time) Agent {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	return a
}

// checkShare reports whether r may join the routes already on its listen
// address: only PostgreSQL routes share one (the protocol tells them apart),
// and one of them at most is the default.
func checkShare(r Route, others []listenShare) error {
	for _, o := range others {
		if r.Protocol != ProtocolPostgres || o.protocol != ProtocolPostgres {
			return fmt.Errorf("route %q: listen address %q: %w (route %q); only postgres routes can share an address",
				r.Name, r.Listen, ErrExists, o.name)
		}
		if r.Default && o.isDefault {
			return fmt.Errorf("route %q: listen address %q already has a default route: %w (route %q)",
				r.Name, r.Listen, ErrExists, o.name)
		}
	}
	return nil
}
