package main

import (
	"fmt"
	"os"

	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// withCA returns the server's certificate chain with the CA of server.ca
// appended (unless the chain holds it already), and the CA's fingerprint.
// Agents that pin the CA are unaffected; an agent that enrolls with
// --ca-fingerprint finds the CA in the chain and pins it.
func withCA(cfg *config.Server, certPEM []byte) (chainPEM []byte, caFingerprint string, err error) {
	caPEM, err := os.ReadFile(cfg.Server.CA)
	if err != nil {
		return nil, "", fmt.Errorf("server.ca: %w", err)
	}
	chainPEM, err = auth.AppendCACert(certPEM, caPEM)
	if err != nil {
		return nil, "", fmt.Errorf("server.ca %s: %w", cfg.Server.CA, err)
	}
	caFingerprint, err = auth.CACertFingerprint(caPEM)
	if err != nil {
		return nil, "", fmt.Errorf("server.ca %s: %w", cfg.Server.CA, err)
	}
	return chainPEM, caFingerprint, nil
}
