package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// EnrollTokenPrefix starts every enrollment token, so that a leaked one is
// easy to recognise and to scan for, and is not mistaken for an admin token
// ([TokenPrefix]).
const EnrollTokenPrefix = "tse_"

// Lengths of the parts of an enrollment token.
const (
	enrollIDBytes     = 8  // 16 hex digits: public, names the token in the store
	enrollSecretBytes = 32 // 256 bits: 43 characters of unpadded base64url
	enrollIDLen       = 2 * enrollIDBytes
	enrollSecretLen   = 43
	// EnrollTokenLen is the length of an enrollment token's text.
	EnrollTokenLen = len(EnrollTokenPrefix) + enrollIDLen + 1 + enrollSecretLen
)

// EnrollToken is a one-time enrollment token: a public id and a 256-bit
// secret. Its text is [EnrollTokenPrefix], the id as 16 lowercase hex
// digits, '_', and the secret as 43 characters of unpadded base64url:
//
//	tse_0123456789abcdef_<43 characters>
//
// The server stores only the id and [EnrollToken.Hash]; whoever holds the
// text can enroll an agent once. Formatting an EnrollToken with the fmt
// package shows its id, never its secret.
type EnrollToken struct {
	// ID is the public part: it finds the token in the store and may be
	// logged.
	ID string
	// secret is a func for the reason AgentKey's is: nothing that prints a
	// value follows a func.
	secret func() []byte
}

// NewEnrollToken returns a new random enrollment token.
func NewEnrollToken() (*EnrollToken, error) {
	return newEnrollToken(rand.Reader)
}

func newEnrollToken(r io.Reader) (*EnrollToken, error) {
	b := make([]byte, enrollIDBytes+enrollSecretBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("new enrollment token: %w", err)
	}
	secret := b[enrollIDBytes:]
	return &EnrollToken{ID: hex.EncodeToString(b[:enrollIDBytes]), secret: func() []byte { return secret }}, nil
}

// ParseEnrollToken parses the text of an enrollment token. Surrounding
// space is ignored. Errors wrap [ErrMalformedToken] and never repeat the
// input, which may be a secret with a typo.
func ParseEnrollToken(s string) (*EnrollToken, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, EnrollTokenPrefix)
	if !ok {
		if strings.HasPrefix(s, TokenPrefix) {
			return nil, fmt.Errorf("%w: this is an admin token (%s...), not an enrollment token (%s...)", ErrMalformedToken, TokenPrefix, EnrollTokenPrefix)
		}
		return nil, fmt.Errorf("%w: an enrollment token starts with %q", ErrMalformedToken, EnrollTokenPrefix)
	}
	if len(s) != EnrollTokenLen || rest[enrollIDLen] != '_' {
		return nil, fmt.Errorf("%w: an enrollment token is %d characters long, %s, 16 hex digits, '_' and 43 more characters (this one has %d)",
			ErrMalformedToken, EnrollTokenLen, EnrollTokenPrefix, len(s))
	}
	id := rest[:enrollIDLen]
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
		return nil, fmt.Errorf("%w: the token's id is not 16 lowercase hex digits", ErrMalformedToken)
	}
	secret, err := base64.RawURLEncoding.Strict().DecodeString(rest[enrollIDLen+1:])
	if err != nil || len(secret) != enrollSecretBytes {
		return nil, fmt.Errorf("%w: the token's secret part is not base64url", ErrMalformedToken)
	}
	return &EnrollToken{ID: id, secret: func() []byte { return secret }}, nil
}

// Reveal returns the token's text, secret included: what the operator hands
// to `tunnel-agent enroll`. Never log it.
func (t *EnrollToken) Reveal() string {
	return EnrollTokenPrefix + t.ID + "_" + base64.RawURLEncoding.EncodeToString(t.secret())
}

// Hash returns the SHA-256 hash of the token's secret: what the server
// stores. A plain hash is enough for a 256-bit random secret: there is no
// dictionary to try.
func (t *EnrollToken) Hash() []byte {
	h := sha256.Sum256(t.secret())
	return h[:]
}

// Matches reports whether the token's secret hashes to hash, in constant
// time. An empty hash never matches.
func (t *EnrollToken) Matches(hash []byte) bool {
	return len(hash) == sha256.Size && subtle.ConstantTimeCompare(t.Hash(), hash) == 1
}

// String names the token by its id, without the secret.
func (t *EnrollToken) String() string {
	if t == nil || t.secret == nil {
		return "EnrollToken(<none>)"
	}
	return "EnrollToken(" + EnrollTokenPrefix + t.ID + "_...)"
}

// Format implements [fmt.Formatter] so that no verb prints the secret.
func (t *EnrollToken) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, t.String())
}
