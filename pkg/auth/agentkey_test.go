package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// goldenFingerprint is the fingerprint of the Ed25519 key whose seed is the
// bytes 0 to 31, computed independently (Python's cryptography package). A
// change means every registered agent would be locked out.
const goldenFingerprint = "sha256:oFCDfYUHBYLM9zlLCYiEfMMSy4glm4lImfbyOc8XkaU"

func goldenKey(t *testing.T) *AgentKey {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	k, err := newAgentKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pkcs8PEM(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestFingerprint(t *testing.T) {
	golden := goldenKey(t)
	fresh, err := NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		key  *AgentKey
		want string // empty: only check consistency
	}{
		{name: "golden", key: golden, want: goldenFingerprint},
		{name: "new", key: fresh},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp := tt.key.Fingerprint()
			if tt.want != "" && fp != tt.want {
				t.Errorf("Fingerprint = %s, want %s", fp, tt.want)
			}
			if !ValidFingerprint(fp) {
				t.Errorf("ValidFingerprint(%s) = false", fp)
			}
			if fromPub, err := Fingerprint(tt.key.Public()); err != nil || fromPub != fp {
				t.Errorf("Fingerprint(Public()) = %s, %v; want %s", fromPub, err, fp)
			}
			parsed, err := ParseAgentKey(tt.key.PEM())
			if err != nil {
				t.Fatalf("ParseAgentKey(PEM()): %v", err)
			}
			if parsed.Fingerprint() != fp {
				t.Errorf("fingerprint after PEM round trip = %s, want %s", parsed.Fingerprint(), fp)
			}
			if !bytes.Equal(parsed.PEM(), tt.key.PEM()) {
				t.Error("PEM changed in a round trip")
			}
		})
	}
}

func TestFingerprintKeyTypes(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pub     any
		wantErr bool
	}{
		{name: "Ed25519", pub: goldenKey(t).Public()},
		{name: "ECDSA", pub: ec.Public()},
		{name: "nil", pub: nil, wantErr: true},
		{name: "not a key", pub: "sha256:abc", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp, err := Fingerprint(tt.pub)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Fingerprint error = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && !ValidFingerprint(fp) {
				t.Errorf("ValidFingerprint(%s) = false", fp)
			}
		})
	}
}

func TestValidFingerprint(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "golden", in: goldenFingerprint, want: true},
		{name: "empty", in: "", want: false},
		{name: "no prefix", in: strings.TrimPrefix(goldenFingerprint, FingerprintPrefix), want: false},
		{name: "other hash", in: "sha512:" + strings.TrimPrefix(goldenFingerprint, FingerprintPrefix), want: false},
		{name: "padded", in: goldenFingerprint[:len(goldenFingerprint)-1] + "=", want: false},
		{name: "standard alphabet", in: goldenFingerprint[:len(goldenFingerprint)-1] + "+", want: false},
		{name: "too short", in: goldenFingerprint[:len(goldenFingerprint)-1], want: false},
		{name: "too long", in: goldenFingerprint + "A", want: false},
		// 43 characters carry 258 bits; the last character's two spare bits must be zero.
		{name: "non-canonical last character", in: goldenFingerprint[:len(goldenFingerprint)-1] + "V", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidFingerprint(tt.in); got != tt.want {
				t.Errorf("ValidFingerprint(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseAgentKey(t *testing.T) {
	good := goldenKey(t).PEM()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(good)

	tests := []struct {
		name     string
		in       []byte
		wantErr  bool
		wantText string // in the error message
	}{
		{name: "PKCS#8 Ed25519", in: good},
		{name: "with surrounding text", in: append(append([]byte("# agent key\n"), good...), "trailer\n"...)},
		{name: "empty", in: nil, wantErr: true, wantText: "empty"},
		{name: "blank", in: []byte(" \n\t"), wantErr: true, wantText: "empty"},
		{name: "garbage", in: []byte("hello, world"), wantErr: true, wantText: "not PEM"},
		{name: "bare base64", in: []byte(base64.StdEncoding.EncodeToString(block.Bytes)), wantErr: true, wantText: "not PEM"},
		{name: "RSA PKCS#8", in: pkcs8PEM(t, rsaKey), wantErr: true, wantText: "RSA"},
		{name: "ECDSA PKCS#8", in: pkcs8PEM(t, ecKey), wantErr: true, wantText: "ECDSA"},
		{name: "SEC 1 EC key", in: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), wantErr: true, wantText: "EC PRIVATE KEY"},
		{name: "certificate", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), wantErr: true, wantText: "CERTIFICATE"},
		{name: "truncated DER", in: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: block.Bytes[:len(block.Bytes)-1]}), wantErr: true, wantText: "PKCS#8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseAgentKey(tt.in)
			if !tt.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				if k.Fingerprint() != goldenFingerprint {
					t.Errorf("Fingerprint = %s, want %s", k.Fingerprint(), goldenFingerprint)
				}
				return
			}
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("error = %v, want ErrInvalidKey", err)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not mention %q", err, tt.wantText)
			}
		})
	}
}

// secretRenderings returns ways the agent key's secret could show up in text:
// windows of the PEM body, and the seed in hex, base64 and as fmt prints bytes.
func secretRenderings(t *testing.T, k *AgentKey) []string {
	t.Helper()
	block, _ := pem.Decode(k.PEM())
	body := base64.StdEncoding.EncodeToString(block.Bytes)
	seed := k.secret().priv.Seed()
	var out []string
	// The first 16 bytes of DER are the same for every Ed25519 key; windows
	// over the rest cover the seed.
	const window = 8
	for i := len("MC4CAQAwBQYDK2VwBCIEI"); i+window <= len(body); i++ {
		out = append(out, body[i:i+window])
	}
	return append(out,
		hex.EncodeToString(seed[:8]),
		strings.ToUpper(hex.EncodeToString(seed[:8])),
		base64.StdEncoding.EncodeToString(seed[:8]),
		base64.RawURLEncoding.EncodeToString(seed[:8]),
		strings.Trim(fmt.Sprint(seed[:8]), "[]"),
		strings.Trim(fmt.Sprintf("%#v", seed[:4]), "[]byte{}"),
	)
}

func assertNoSecret(t *testing.T, what, text string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s %q contains key material %q", what, text, s)
		}
	}
}

// TestParseAgentKeyLeaksNothing feeds ParseAgentKey near misses of a real key
// and checks that no error message repeats any of it.
func TestParseAgentKeyLeaksNothing(t *testing.T) {
	key, err := NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	secrets := secretRenderings(t, key)
	block, _ := pem.Decode(key.PEM())
	der := block.Bytes
	reblock := func(typ string, b []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})
	}
	flip := func(i int) []byte {
		b := bytes.Clone(der)
		b[i] ^= 0xff
		return b
	}

	tests := []struct {
		name string
		in   []byte
	}{
		{name: "SEC 1 block type", in: reblock("EC PRIVATE KEY", der)},
		{name: "RSA block type", in: reblock("RSA PRIVATE KEY", der)},
		{name: "OpenSSH block type", in: reblock("OPENSSH PRIVATE KEY", der)},
		{name: "truncated", in: reblock("PRIVATE KEY", der[:len(der)-3])},
		{name: "trailing data", in: reblock("PRIVATE KEY", append(bytes.Clone(der), der...))},
		{name: "bad version tag", in: reblock("PRIVATE KEY", flip(2))},
		{name: "bad algorithm", in: reblock("PRIVATE KEY", flip(10))},
		{name: "bad inner length", in: reblock("PRIVATE KEY", flip(15))},
		{name: "body is the DER in hex", in: reblock("PRIVATE KEY", []byte(hex.EncodeToString(der)))},
		{name: "broken base64", in: bytes.Replace(key.PEM(), []byte("\n-----END"), []byte("!!\n-----END"), 1)},
		{name: "type line is the body", in: []byte("-----BEGIN " + base64.StdEncoding.EncodeToString(der) + "-----\n" +
			base64.StdEncoding.EncodeToString(der) + "\n-----END " + base64.StdEncoding.EncodeToString(der) + "-----\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAgentKey(tt.in)
			if err == nil {
				t.Fatal("ParseAgentKey succeeded, want an error")
			}
			assertNoSecret(t, "error", err.Error(), secrets)
		})
	}
}

// TestAgentKeyFormat checks that printing an AgentKey never prints the key.
func TestAgentKeyFormat(t *testing.T) {
	key, err := NewAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	secrets := secretRenderings(t, key)
	type holder struct {
		Key     AgentKey
		Ptr     *AgentKey
		private AgentKey
	}
	h := holder{Key: *key, Ptr: key, private: *key}

	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		for _, v := range []struct {
			name string
			val  any
		}{
			{"pointer", key},
			{"value", *key},
			{"in struct", h},
			{"pointer to struct", &h},
			{"in slice", []*AgentKey{key}},
		} {
			t.Run(verb+" "+v.name, func(t *testing.T) {
				assertNoSecret(t, "output", fmt.Sprintf(verb, v.val), secrets)
			})
		}
	}
	if got, want := key.String(), "AgentKey("+key.Fingerprint()+")"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// FuzzParseAgentKey checks that no input makes ParseAgentKey panic, that
// every error wraps ErrInvalidKey, and that every key it accepts round-trips.
func FuzzParseAgentKey(f *testing.F) {
	key, err := NewAgentKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(key.PEM())
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, in []byte) {
		k, err := ParseAgentKey(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("error %v does not wrap ErrInvalidKey", err)
			}
			return
		}
		again, err := ParseAgentKey(k.PEM())
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if again.Fingerprint() != k.Fingerprint() {
			t.Fatal("fingerprint changed in a round trip")
		}
	})
}
