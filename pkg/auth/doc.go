// Package auth holds the identities and credentials of the tunnel: the
// server's private certificate authority and the certificates it issues,
// agent keys and the fingerprints that identify them, the TLS configurations
// both ends of a tunnel connection use, the check of an authenticated agent
// against the server's registry, enrollment tokens, and the admin API bearer
// token.
//
// The model: tunnel-server keeps a private CA (ECDSA P-256) and a server
// certificate signed by it; agents pin the CA certificate, or trust the system
// roots when they pin none. Each agent owns an Ed25519 key that never leaves
// its host. When the agent starts it makes, in memory only, a self-signed
// certificate carrying its name and public key, and presents it as its TLS
// client certificate; the TLS 1.3 handshake proves that the agent holds the
// key. The server stores only the key's fingerprint, so nothing it keeps can
// impersonate an agent. After the handshake the server extracts the peer's
// [Identity] with [PeerIdentity] and checks it with a [Verifier], so that a
// refusal can be explained to the agent in a protocol message rather than as
// a bare TLS alert. The same [tls.Config] values serve TLS over TCP and QUIC.
//
// Enrollment: instead of a key made on the server's host, an agent can make
// its own and register it with a one-time [EnrollToken] (only the token's
// id and [EnrollToken.Hash] are stored). The enrolling agent checks the
// server against the fingerprint of its CA certificate ([CertFingerprint],
// [PinnedCAConfig]); the server presents that certificate in its chain
// ([AppendCACert]). Key rotation: the registry may hold a pending key
// besides the current one ([Registration]); [Verifier] accepts both.
//
// The package does not dial, listen or store anything: transports live in
// pkg/mux, and the registry that backs [Verifier.Lookup] belongs to the
// server. It reads no files and no environment; callers pass PEM bytes in and
// write the PEM bytes they get back.
package auth
