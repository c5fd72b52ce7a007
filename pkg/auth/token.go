package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
)

// TokenPrefix starts every admin token. It makes a leaked token easy to
// recognise (and to scan for) without revealing anything about its secret part.
const TokenPrefix = "tsa_"

// tokenBytes is the entropy of an admin token: 256 bits.
const tokenBytes = 32

// NewToken returns a new random admin API bearer token: [TokenPrefix]
// followed by 43 characters of unpadded base64url encoding 32 random bytes.
func NewToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// TokenEqual reports whether the presented token a equals the expected token
// b, in time that depends on neither content nor length. An empty token never
// matches, so an unset credential cannot be satisfied by an absent one.
func TokenEqual(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	// Hashing first makes the comparison independent of the lengths too;
	// subtle.ConstantTimeCompare returns early when the lengths differ.
	ha := sha256.Sum256([]byte(a))
	hb := sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}
