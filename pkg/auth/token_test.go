package auth

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestNewToken(t *testing.T) {
	seen := make(map[string]bool)
	for i := range 100 {
		tok, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(tok, TokenPrefix) || len(tok) != len(TokenPrefix)+43 {
			t.Fatalf("token %d has the wrong form: length %d", i, len(tok))
		}
		b, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimPrefix(tok, TokenPrefix))
		if err != nil || len(b) != 32 {
			t.Fatalf("token %d: secret part is not 32 bytes of base64url (%d bytes, %v)", i, len(b), err)
		}
		if seen[tok] {
			t.Fatalf("token %d repeats an earlier one", i)
		}
		seen[tok] = true
	}
}

func TestTokenEqual(t *testing.T) {
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{name: "same", a: tok, b: strings.Clone(tok), want: true},
		{name: "different", a: tok, b: other, want: false},
		{name: "last character differs", a: tok, b: tok[:len(tok)-1] + "x", want: tok[len(tok)-1] == 'x'},
		{name: "prefix of the token", a: tok[:len(tok)-1], b: tok, want: false},
		{name: "token with suffix", a: tok + "a", b: tok, want: false},
		{name: "case differs", a: strings.ToUpper(tok), b: tok, want: false},
		{name: "empty presented", a: "", b: tok, want: false},
		{name: "empty expected", a: tok, b: "", want: false},
		{name: "both empty", a: "", b: "", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TokenEqual(tt.a, tt.b); got != tt.want {
				t.Errorf("TokenEqual = %v, want %v", got, tt.want)
			}
		})
	}
}
