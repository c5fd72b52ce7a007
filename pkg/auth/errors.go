package auth

import "errors"

// Errors returned by this package. Callers test for them with [errors.Is];
// the returned errors wrap them with the agent name or other context.
var (
	// ErrUnknownAgent means no agent of that name is registered.
	ErrUnknownAgent = errors.New("unknown agent")
	// ErrAgentDisabled means the agent is registered but disabled.
	ErrAgentDisabled = errors.New("agent disabled")
	// ErrKeyMismatch means the agent proved a key other than its registered one.
	ErrKeyMismatch = errors.New("agent key does not match the registered key")
	// ErrNoIdentity means the peer presented no usable client certificate.
	ErrNoIdentity = errors.New("no agent certificate")
	// ErrInvalidKey means PEM data does not hold a usable private key of the
	// expected kind.
	ErrInvalidKey = errors.New("invalid private key")
	// ErrNoCertificate means PEM data holds no certificate.
	ErrNoCertificate = errors.New("no certificate found in PEM data")
)

// Errors about enrollment and the server's CA.
var (
	// ErrMalformedToken means a string is not an enrollment token.
	ErrMalformedToken = errors.New("malformed enrollment token")
	// ErrCAMismatch means the server presented no CA certificate with the
	// pinned fingerprint.
	ErrCAMismatch = errors.New("server CA fingerprint mismatch")
	// ErrMalformedFingerprint means a string is not a certificate
	// fingerprint.
	ErrMalformedFingerprint = errors.New("malformed certificate fingerprint")
)
