package auth

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestNewEnrollToken(t *testing.T) {
	seen := map[string]bool{}
	for i := range 100 {
		tok, err := NewEnrollToken()
		if err != nil {
			t.Fatal(err)
		}
		text := tok.Reveal()
		if len(text) != EnrollTokenLen || !strings.HasPrefix(text, EnrollTokenPrefix+tok.ID+"_") {
			t.Fatalf("token %d has the wrong form (length %d)", i, len(text))
		}
		if seen[tok.ID] {
			t.Fatalf("token %d repeats an earlier id", i)
		}
		seen[tok.ID] = true
		back, err := ParseEnrollToken(" " + text + "\n")
		if err != nil {
			t.Fatalf("token %d does not parse back: %v", i, err)
		}
		if back.ID != tok.ID || back.Reveal() != text || !bytes.Equal(back.Hash(), tok.Hash()) {
			t.Fatalf("token %d changed in a round trip", i)
		}
		if !back.Matches(tok.Hash()) {
			t.Fatalf("token %d does not match its own hash", i)
		}
	}
}

func TestEnrollTokenMatches(t *testing.T) {
	tok, err := NewEnrollToken()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewEnrollToken()
	if err != nil {
		t.Fatal(err)
	}
	// Same id, another secret: what a guess at the secret looks like.
	guess, err := ParseEnrollToken(EnrollTokenPrefix + tok.ID + other.Reveal()[len(EnrollTokenPrefix)+enrollIDLen:])
	if err != nil {
		t.Fatal(err)
	}
	secretSum := sha256.Sum256(tok.secret())
	tests := []struct {
		name string
		tok  *EnrollToken
		hash []byte
		want bool
	}{
		{"own hash", tok, tok.Hash(), true},
		{"the hash is of the secret", tok, secretSum[:], true},
		{"other token", other, tok.Hash(), false},
		{"same id, other secret", guess, tok.Hash(), false},
		{"empty hash", tok, nil, false},
		{"truncated hash", tok, tok.Hash()[:31], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.tok.Matches(tt.hash); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseEnrollTokenErrors(t *testing.T) {
	tok, err := NewEnrollToken()
	if err != nil {
		t.Fatal(err)
	}
	good := tok.Reveal()
	secret := good[len(EnrollTokenPrefix)+enrollIDLen+1:]
	tests := []struct {
		name, in string
	}{
		{"empty", ""},
		{"admin token", TokenPrefix + secret},
		{"no prefix", good[len(EnrollTokenPrefix):]},
		{"truncated", good[:len(good)-1]},
		{"extra character", good + "A"},
		{"upper-case id", EnrollTokenPrefix + strings.ToUpper("abcdef0123456789") + "_" + secret},
		{"id not hex", EnrollTokenPrefix + "zzzzzzzzzzzzzzzz_" + secret},
		{"no separator", EnrollTokenPrefix + tok.ID + "-" + secret},
		{"secret not base64url", EnrollTokenPrefix + tok.ID + "_" + strings.Repeat("*", 43)},
		// 'B' sets one of the two bits past the 256 the secret has: a
		// strict decoder refuses it, so each secret has one spelling.
		{"secret with padding bits", EnrollTokenPrefix + tok.ID + "_" + secret[:42] + "B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEnrollToken(tt.in)
			if !errors.Is(err, ErrMalformedToken) {
				t.Fatalf("ParseEnrollToken = %v, %v; want ErrMalformedToken", got, err)
			}
			if strings.Contains(err.Error(), secret[:10]) {
				t.Errorf("error %q repeats the secret", err)
			}
		})
	}
}

func TestEnrollTokenFormat(t *testing.T) {
	tok, err := NewEnrollToken()
	if err != nil {
		t.Fatal(err)
	}
	secret := tok.Reveal()[len(EnrollTokenPrefix)+enrollIDLen+1:]
	wrapped := struct{ T *EnrollToken }{tok}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		for _, v := range []any{tok, wrapped} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, secret) || strings.Contains(out, fmt.Sprintf("%x", tok.secret())) {
				t.Errorf("%s of %T shows the secret: %s", verb, v, out)
			}
		}
	}
	if s := tok.String(); !strings.Contains(s, tok.ID) {
		t.Errorf("String() = %q, want it to name the id", s)
	}
}
