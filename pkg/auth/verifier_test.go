package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// registryEntry is one agent in the fake registry.
type registryEntry struct {
	fingerprint string
	pending     string
	disabled    bool
}

// fakeRegistry is a Verifier.Lookup over a map; it records the names it was
// asked about and fails for the name "broken".
type fakeRegistry struct {
	agents map[string]registryEntry
	asked  []string
}

var errStoreDown = errors.New("registry store is down")

type ctxKey struct{}

func (r *fakeRegistry) lookup(ctx context.Context, name string) (Registration, error) {
	r.asked = append(r.asked, name)
	if ctx.Value(ctxKey{}) != "marker" {
		return Registration{}, errors.New("context not passed through")
	}
	if name == "broken" {
		return Registration{}, fmt.Errorf("query agents: %w", errStoreDown)
	}
	e, ok := r.agents[name]
	if !ok {
		return Registration{}, fmt.Errorf("registry: %q: %w", name, ErrUnknownAgent)
	}
	return Registration{Fingerprint: e.fingerprint, Pending: e.pending, Disabled: e.disabled}, nil
}

func TestVerifier(t *testing.T) {
	key, err := NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	nextKey, err := NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	fp, next := key.Fingerprint(), nextKey.Fingerprint()

	tests := []struct {
		name        string
		id          Identity
		wantErr     error // nil: success
		wantPending bool
		wantAsked   bool // whether Lookup must have been called
	}{
		{name: "registered", id: Identity{Name: "acme", Fingerprint: fp}, wantAsked: true},
		{name: "current key while rotating", id: Identity{Name: "rotating", Fingerprint: fp}, wantAsked: true},
		{name: "pending key", id: Identity{Name: "rotating", Fingerprint: next}, wantPending: true, wantAsked: true},
		{name: "pending key of another agent", id: Identity{Name: "acme", Fingerprint: next}, wantErr: ErrKeyMismatch, wantAsked: true},
		{name: "pending key of a disabled agent", id: Identity{Name: "off-rotating", Fingerprint: next}, wantErr: ErrAgentDisabled, wantAsked: true},
		{name: "waiting for enrollment", id: Identity{Name: "waiting", Fingerprint: fp}, wantErr: ErrKeyMismatch, wantAsked: true},
		{name: "unknown", id: Identity{Name: "nobody", Fingerprint: fp}, wantErr: ErrUnknownAgent, wantAsked: true},
		{name: "disabled", id: Identity{Name: "off", Fingerprint: fp}, wantErr: ErrAgentDisabled, wantAsked: true},
		{name: "key mismatch", id: Identity{Name: "acme", Fingerprint: otherKey.Fingerprint()}, wantErr: ErrKeyMismatch, wantAsked: true},
		// The key is checked first, so an impostor does not learn that the agent is disabled.
		{name: "disabled with wrong key", id: Identity{Name: "off", Fingerprint: otherKey.Fingerprint()}, wantErr: ErrKeyMismatch, wantAsked: true},
		{name: "empty fingerprint", id: Identity{Name: "acme"}, wantErr: ErrKeyMismatch, wantAsked: true},
		{name: "registered without fingerprint", id: Identity{Name: "blank"}, wantErr: ErrKeyMismatch, wantAsked: true},
		{name: "fingerprint prefix", id: Identity{Name: "acme", Fingerprint: fp[:len(fp)-1]}, wantErr: ErrKeyMismatch, wantAsked: true},
		{name: "lookup error", id: Identity{Name: "broken", Fingerprint: fp}, wantErr: errStoreDown, wantAsked: true},
		{name: "invalid name", id: Identity{Name: "../acme", Fingerprint: fp}, wantErr: ErrUnknownAgent},
		{name: "empty name", id: Identity{Fingerprint: fp}, wantErr: ErrUnknownAgent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := &fakeRegistry{agents: map[string]registryEntry{
				"acme":  {fingerprint: fp},
				"off":   {fingerprint: fp, disabled: true},
				"blank": {},
				// An agent waiting for enrollment has no key, and no
				// empty pending key may stand in for one.
				"waiting":      {pending: ""},
				"rotating":     {fingerprint: fp, pending: next},
				"off-rotating": {fingerprint: fp, pending: next, disabled: true},
			}}
			v := &Verifier{Lookup: reg.lookup}
			ctx := context.WithValue(context.Background(), ctxKey{}, "marker")
			pending, err := v.Verify(ctx, tt.id)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if pending != tt.wantPending {
				t.Errorf("Verify pending = %v, want %v", pending, tt.wantPending)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
			}
			if asked := len(reg.asked) > 0; asked != tt.wantAsked {
				t.Errorf("Lookup called: %v, want %v", asked, tt.wantAsked)
			}
			if err == nil {
				return
			}
			msg := err.Error()
			if tt.id.Name != "" && !strings.Contains(msg, fmt.Sprintf("%q", tt.id.Name)) {
				t.Errorf("error %q does not name agent %q", msg, tt.id.Name)
			}
			for _, f := range []string{fp, next, otherKey.Fingerprint()} {
				if strings.Contains(msg, strings.TrimPrefix(f, FingerprintPrefix)[:12]) {
					t.Errorf("error %q contains a fingerprint", msg)
				}
			}
			// Each refusal carries exactly one reason.
			n := 0
			for _, s := range []error{ErrUnknownAgent, ErrAgentDisabled, ErrKeyMismatch, errStoreDown} {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("error %q wraps %d reasons, want 1", msg, n)
			}
		})
	}
}

func TestVerifierWithoutLookup(t *testing.T) {
	tests := []struct {
		name string
		v    *Verifier
	}{
		{name: "nil verifier", v: nil},
		{name: "zero verifier", v: &Verifier{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.v.Verify(context.Background(), Identity{Name: "acme", Fingerprint: "sha256:x"})
			if err == nil {
				t.Fatal("Verify succeeded without a Lookup")
			}
		})
	}
}
