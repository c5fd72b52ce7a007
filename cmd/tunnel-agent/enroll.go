package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/internal/version"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// enrollFlags are the flags of `tunnel-agent enroll`.
type enrollFlags struct {
	server, token, caFingerprint, out string
}

func (a *app) enrollCmd() *cobra.Command {
	var f enrollFlags
	cmd := &cobra.Command{
		Use:   "enroll --server ADDR --token TOKEN [--ca-fingerprint F] [--out FILE]",
		Short: "Make this agent's key here, register it with a one-time token, and write the config",
		Long: `enroll makes the agent's key on this host, connects to the server over TLS,
registers the key with the one-time token from 'tunnel-server agent add NAME
--token', and writes a ready config: the server's address, its CA, the
agent's name (the one the token was issued for) and the key. The key never
leaves this host; the server learns only its fingerprint.

With --ca-fingerprint (printed by 'agent add --token'), the server is
accepted only if its certificate chain holds a CA certificate with that
fingerprint and its certificate chains to that CA for the name in --server;
that CA is then pinned in the config. The fingerprint may be given as
tunnel-server prints it (sha256:BASE64URL) or as hex, with or without
colons. Without it, the server's certificate must chain to this host's
system roots, and the config pins nothing.

When HTTPS_PROXY (or https_proxy) is set, enroll reaches the server through
that HTTP proxy with CONNECT, unless NO_PROXY exempts the server, as
'tunnel-agent run' does when its config sets no [server] proxy.

The config goes to --out (default ./tunnel-agent.toml), mode 0600; an
existing file is never overwritten, and the file is created before the
token is spent. Declare the databases the agent may reach as [[targets]]
in it, then run 'tunnel-agent run --config FILE'.`,
		Example: `  tunnel-agent enroll --server tunnel.example.com:7443 --token tse_... --ca-fingerprint sha256:...
  tunnel-agent enroll --server tunnel.example.com:7443 --token tse_... --out /etc/tunnel-agent.toml`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.enroll(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", "", "the server's address, host:port, as agents reach it")
	fl.StringVar(&f.token, "token", "", "the one-time enrollment token (tse_...)")
	fl.StringVar(&f.caFingerprint, "ca-fingerprint", "", "fingerprint of the server's CA certificate, to check the server and pin its CA")
	fl.StringVar(&f.out, "out", config.AgentFile, "file to write the agent config to")
	return cmd
}

func (a *app) enroll(cmd *cobra.Command, f enrollFlags) error {
	switch {
	case f.server == "":
		return cli.Usage(errors.New("--server is required: the address printed by 'tunnel-server agent add --token'"))
	case f.token == "":
		return cli.Usage(errors.New("--token is required: the token printed by 'tunnel-server agent add --token'"))
	}
	tok, err := auth.ParseEnrollToken(f.token)
	if err != nil {
		return cli.Usage(fmt.Errorf("--token: %w", err))
	}
	host, _, err := net.SplitHostPort(f.server)
	if err != nil || host == "" {
		return cli.Usage(fmt.Errorf("--server %q: want host:port", f.server))
	}
	var pin [32]byte
	if f.caFingerprint != "" {
		if pin, err = auth.ParseCertFingerprint(f.caFingerprint); err != nil {
			return cli.Usage(fmt.Errorf("--ca-fingerprint: %w", err))
		}
	}
	// The agent's way to the server, as run finds it without a config.
	server := config.AgentServer{Address: f.server, Transport: config.TransportTLS}
	proxy, err := server.ResolveProxy(os.Getenv)
	if err != nil {
		return cli.Usage(err)
	}
	log, err := a.Logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	// The file first: the token works once, so nothing may stop the
	// config from being written once it is spent.
	file, err := config.CreateFile(f.out)
	if err != nil {
		return err
	}
	written := false
	defer func() {
		if !written {
			file.Remove()
		}
	}()

	key, err := auth.NewAgentKey()
	if err != nil {
		return err
	}
	tlsConf, err := auth.PinnedCAConfig(key, f.caFingerprint, host)
	if err != nil {
		return cli.Usage(err)
	}
	eng, err := agent.New(agent.Options{
		Name:          "enrolling",
		ServerAddress: f.server,
		TLSConfig:     tlsConf,
		Transport:     agent.TransportTLS,
		Proxy:         proxy.URL,
		Version:       version.Get().Version,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	res, err := eng.Enroll(cmd.Context(), tok.Reveal())
	if err != nil {
		where := f.server
		if proxy.URL != nil {
			where += " (through the proxy " + proxy.String() + " from " + proxy.From + ")"
		}
		return enrollError(where, err)
	}
	if res.Fingerprint != key.Fingerprint() {
		return fmt.Errorf("the server registered key %s, not this one (%s); ask its operator to remove the agent and add it again", res.Fingerprint, key.Fingerprint())
	}

	tmpl := config.AgentTemplate{
		Agent:         res.Agent,
		ServerAddress: f.server,
		KeyPEM:        string(key.PEM()),
		Created:       time.Now(),
		WrittenBy:     "tunnel-agent enroll",
	}
	if f.caFingerprint != "" {
		// The handshake checked that the chain holds it.
		if ca := auth.FindCA(res.ServerChain, pin); ca != nil {
			tmpl.CAPEM = string(auth.CertPEM(ca))
		} else {
			err = errors.New("the server's CA certificate is missing from what the handshake kept")
		}
	}
	var data []byte
	if err == nil {
		data, err = config.RenderAgent(tmpl)
	}
	if err == nil {
		written = true // Write removes the file itself when it fails
		err = file.Write(data)
	}
	if err != nil {
		return fmt.Errorf("enrolled as agent %q, but the config could not be written, and with it the key is lost: %w; "+
			"ask the server's operator to remove the agent and add it again with --token", res.Agent, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), `Enrolled as agent %q with key %s.
Wrote %s (mode 0600; it holds the agent's private key, which never left this host).
Declare the databases the agent may reach as [[targets]] in it, check it, and start the agent:

  tunnel-agent check --config %s
  tunnel-agent run --config %s
`, res.Agent, key.Fingerprint(), f.out, f.out, f.out)
	return nil
}

// enrollError says why enrolling at server failed.
func enrollError(server string, err error) error {
	var (
		ref  *proto.Refuse
		verr *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &ref):
		return &cli.ExitError{Code: cli.ExitRefused, Err: fmt.Errorf("enrollment refused by server %s: %s", server, ref.Message)}
	case errors.Is(err, auth.ErrCAMismatch):
		return fmt.Errorf("not enrolling at %s, whose certificate does not match --ca-fingerprint: %w", server, err)
	case errors.As(err, &verr):
		return fmt.Errorf("not enrolling at %s: its certificate is not trusted by this host's system roots (%v); "+
			"give the server's CA with --ca-fingerprint, as printed by 'tunnel-server agent add --token'", server, verr.Err)
	}
	return fmt.Errorf("cannot enroll at %s: %w", server, err)
}
