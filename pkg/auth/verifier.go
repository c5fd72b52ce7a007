package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
)

// Identity is who a peer proved to be in the TLS handshake: the agent name
// its certificate claims and the fingerprint of the key it proved to hold.
// The name alone proves nothing until a [Verifier] has matched the
// fingerprint against the registry.
type Identity struct {
	// Name is the agent name from the certificate's CommonName.
	Name string
	// Fingerprint is the [Fingerprint] of the certificate's public key.
	Fingerprint string
}

// Registration is what the server's registry holds about an agent's keys.
type Registration struct {
	// Fingerprint is the agent's key. Empty while the agent waits for
	// enrollment: then no key is accepted.
	Fingerprint string
	// Pending is the agent's next key, announced during a key rotation and
	// accepted besides Fingerprint until a connection proves it. Empty
	// when no rotation is under way.
	Pending string
	// Disabled refuses the agent whatever key it holds.
	Disabled bool
}

// Verifier checks an [Identity] against the server's registry of agents.
type Verifier struct {
	// Lookup returns what is registered for the agent named name, or an
	// error wrapping [ErrUnknownAgent] when there is no such agent. It is
	// required.
	Lookup func(ctx context.Context, name string) (Registration, error)
}

// Verify returns nil when id names a registered, enabled agent and carries
// its registered key or its pending one; pending reports which. Otherwise
// it returns an error wrapping [ErrUnknownAgent], [ErrKeyMismatch] or
// [ErrAgentDisabled], whose message names the agent and is fit to send to
// it, or the lookup's error wrapped with the agent name. No message
// contains key material.
//
// The key is checked before the disabled flag, so that only the holder of an
// agent's key learns that the agent is disabled. The fingerprints are
// compared in constant time; an empty one never matches.
func (v *Verifier) Verify(ctx context.Context, id Identity) (pending bool, err error) {
	if v == nil || v.Lookup == nil {
		return false, errors.New("verify agent: auth.Verifier has no Lookup")
	}
	// An invalid name cannot have been registered; refusing it here keeps
	// odd strings out of the registry's queries.
	if !ValidName(id.Name) {
		return false, fmt.Errorf("agent %q: %w", truncate(id.Name, MaxNameLen+1), ErrUnknownAgent)
	}
	reg, err := v.Lookup(ctx, id.Name)
	if errors.Is(err, ErrUnknownAgent) {
		return false, fmt.Errorf("agent %q: %w", id.Name, ErrUnknownAgent)
	}
	if err != nil {
		return false, fmt.Errorf("look up agent %q: %w", id.Name, err)
	}
	current := fingerprintEqual(reg.Fingerprint, id.Fingerprint)
	pending = fingerprintEqual(reg.Pending, id.Fingerprint)
	switch {
	case !current && !pending:
		return false, fmt.Errorf("agent %q: %w", id.Name, ErrKeyMismatch)
	case reg.Disabled:
		return false, fmt.Errorf("agent %q: %w", id.Name, ErrAgentDisabled)
	}
	return pending && !current, nil
}

// fingerprintEqual compares a registered fingerprint with a presented one in
// constant time; an empty registered one matches nothing.
func fingerprintEqual(registered, presented string) bool {
	return registered != "" && subtle.ConstantTimeCompare([]byte(registered), []byte(presented)) == 1
}
