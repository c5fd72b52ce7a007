package auth

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"strings"
)

// pemPrivateKey is the PEM block type of a PKCS#8 private key.
const pemPrivateKey = "PRIVATE KEY"

// FingerprintPrefix starts every key fingerprint and names its hash, so the
// format can change later without ambiguity.
const FingerprintPrefix = "sha256:"

// fingerprintLen is the length of a fingerprint: the prefix and 43 characters
// of unpadded base64url for the 32 bytes of a SHA-256 hash.
const fingerprintLen = len(FingerprintPrefix) + 43

// AgentKey is an agent's private key (Ed25519). It never leaves the agent's
// host; the server knows only its [AgentKey.Fingerprint].
//
// Make one with [NewAgentKey] or [ParseAgentKey]; the zero value is not
// usable. Formatting an AgentKey with the fmt package prints its fingerprint,
// never the key.
type AgentKey struct {
	// secret returns the private material. It is a func because fmt, slog
	// and dumping libraries print a func as an address whatever the verb or
	// the nesting, where they would follow a pointer or print a slice: no
	// way of printing an AgentKey, or a struct holding one, shows the key.
	secret func() *agentSecret
	fprint string
}

// agentSecret is the private material of an AgentKey.
type agentSecret struct {
	priv  ed25519.PrivateKey
	pkcs8 []byte // DER of priv, marshalled once so that PEM cannot fail
}

// NewAgentKey generates a new agent key.
func NewAgentKey() (*AgentKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate agent key: %w", err)
	}
	return newAgentKey(priv)
}

func newAgentKey(priv ed25519.PrivateKey) (*AgentKey, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode agent key: %w", err)
	}
	fp, err := Fingerprint(priv.Public())
	if err != nil {
		return nil, err
	}
	secret := &agentSecret{priv: priv, pkcs8: der}
	return &AgentKey{secret: func() *agentSecret { return secret }, fprint: fp}, nil
}

// ParseAgentKey parses an agent key from a PKCS#8 PEM block ("PRIVATE KEY"),
// as written by [AgentKey.PEM]. Text around the block is ignored. Every error
// wraps [ErrInvalidKey] and says what was found instead; none repeats any of
// the input.
func ParseAgentKey(pemBytes []byte) (*AgentKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		if len(strings.TrimSpace(string(pemBytes))) == 0 {
			return nil, fmt.Errorf("%w: agent key is empty", ErrInvalidKey)
		}
		return nil, fmt.Errorf("%w: agent key is not PEM encoded (expected a %q block)", ErrInvalidKey, pemPrivateKey)
	}
	if block.Type != pemPrivateKey {
		return nil, fmt.Errorf("%w: agent key PEM block is %s, expected %q (PKCS#8 Ed25519)",
			ErrInvalidKey, describeBlockType(block.Type), pemPrivateKey)
	}
	// The parser's error is not wrapped: the input is a secret, and what this
	// message shows must not depend on what a parser chooses to quote.
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil || !singleDERValue(block.Bytes) {
		return nil, fmt.Errorf("%w: agent key is not a well-formed PKCS#8 private key", ErrInvalidKey)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: agent key is %s, expected Ed25519", ErrInvalidKey, keyTypeName(key))
	}
	return newAgentKey(priv)
}

// PEM returns the key as a PKCS#8 PEM block ("PRIVATE KEY"). The result is a
// secret: write it only to a file readable by its owner alone.
func (k *AgentKey) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: k.secret().pkcs8})
}

// Fingerprint returns the fingerprint of the key's public half; see
// [Fingerprint].
func (k *AgentKey) Fingerprint() string { return k.fprint }

// Public returns the public key, an [ed25519.PublicKey].
func (k *AgentKey) Public() crypto.PublicKey { return k.secret().priv.Public() }

// String returns a description naming the key's fingerprint.
func (k *AgentKey) String() string {
	if k == nil || k.secret == nil {
		return "AgentKey(<none>)"
	}
	return "AgentKey(" + k.fprint + ")"
}

// Format implements [fmt.Formatter] so that no verb, %#v and %x included,
// prints the private key.
func (k *AgentKey) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, k.String())
}

// Fingerprint returns the fingerprint of a public key: [FingerprintPrefix]
// followed by the unpadded base64url encoding of the SHA-256 hash of the key's
// DER SubjectPublicKeyInfo. It is what the server stores to recognise an agent.
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("fingerprint of %s: %w", keyTypeName(pub), err)
	}
	return formatFingerprint(sha256.Sum256(der)), nil
}

// ValidFingerprint reports whether s has the form [Fingerprint] produces, so
// that a fingerprint typed or pasted by a user can be checked before it is
// stored.
func ValidFingerprint(s string) bool {
	if len(s) != fingerprintLen || !strings.HasPrefix(s, FingerprintPrefix) {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s[len(FingerprintPrefix):])
	return err == nil && len(b) == sha256.Size
}

// keyTypeName names the type of a public or private key for error messages,
// without printing the key.
func keyTypeName(key any) string {
	switch key.(type) {
	case ed25519.PrivateKey, ed25519.PublicKey:
		return "an Ed25519 key"
	case *ecdsa.PrivateKey, *ecdsa.PublicKey:
		return "an ECDSA key"
	case *rsa.PrivateKey, *rsa.PublicKey:
		return "an RSA key"
	case *ecdh.PrivateKey, *ecdh.PublicKey:
		return "an ECDH key"
	case nil:
		return "no key"
	default:
		return fmt.Sprintf("a key of type %T", key)
	}
}

// singleDERValue reports whether der is exactly one DER value, with nothing
// after it. x509.ParsePKCS8PrivateKey ignores trailing bytes, and a key file
// with something stuck to its key is better refused than half understood.
func singleDERValue(der []byte) bool {
	rest, err := asn1.Unmarshal(der, new(asn1.RawValue))
	return err == nil && len(rest) == 0
}

// describeBlockType names a PEM block type for an error message. Only
// well-known types are repeated: the type line of a damaged PEM file may hold
// anything, including part of the key.
func describeBlockType(typ string) string {
	switch typ {
	case "CERTIFICATE", "PUBLIC KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY",
		"EC PRIVATE KEY", "RSA PRIVATE KEY", "OPENSSH PRIVATE KEY":
		return fmt.Sprintf("%q", typ)
	default:
		return "of an unexpected type"
	}
}

// truncate shortens s to at most n bytes for an error message, so that
// untrusted input cannot make a log line arbitrarily long.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
