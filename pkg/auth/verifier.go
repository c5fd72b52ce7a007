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

// Verifier checks an [Identity] against the server's registry of agents.
type Verifier struct {
	// Lookup returns the registered fingerprint of the agent named name and
	// whether it is disabled, or an error wrapping [ErrUnknownAgent] when
	// there is no such agent. It is required.
	Lookup func(ctx context.Context, name string) (fingerprint string, disabled bool, err error)
}

// Verify returns nil when id names a registered, enabled agent and carries
// its registered fingerprint. Otherwise it returns an error wrapping
// [ErrUnknownAgent], [ErrKeyMismatch] or [ErrAgentDisabled], whose message
// names the agent and is fit to send to it, or the lookup's error wrapped
// with the agent name. No message contains key material.
//
// The key is checked before the disabled flag, so that only the holder of an
// agent's key learns that the agent is disabled. The fingerprints are
// compared in constant time.
func (v *Verifier) Verify(ctx context.Context, id Identity) error {
	if v == nil || v.Lookup == nil {
		return errors.New("verify agent: auth.Verifier has no Lookup")
	}
	// An invalid name cannot have been registered; refusing it here keeps
	// odd strings out of the registry's queries.
	if !ValidName(id.Name) {
		return fmt.Errorf("agent %q: %w", truncate(id.Name, MaxNameLen+1), ErrUnknownAgent)
	}
	want, disabled, err := v.Lookup(ctx, id.Name)
	switch {
	case errors.Is(err, ErrUnknownAgent):
		return fmt.Errorf("agent %q: %w", id.Name, ErrUnknownAgent)
	case err != nil:
		return fmt.Errorf("look up agent %q: %w", id.Name, err)
	case want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(id.Fingerprint)) != 1:
		return fmt.Errorf("agent %q: %w", id.Name, ErrKeyMismatch)
	case disabled:
		return fmt.Errorf("agent %q: %w", id.Name, ErrAgentDisabled)
	}
	return nil
}
