package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/tunnelrelay/tunnel/internal/splice"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// relayHandshakeTimeout bounds the TLS handshake and the target dial of one
// relay session.
const relayHandshakeTimeout = 10 * time.Second

// Relay is the reference relay the tunnel's budgets are measured against: a
// plain TLS relay with one TLS connection per client session and no
// multiplexing.
//
//	client ──TCP──▶ relay-in ══TLS 1.3, one connection per session══▶ relay-out ──TCP──▶ target
//
// Both halves run in this process, as the tunnel's server and agent do in the
// benchmark, and copy with internal/splice, as the tunnel does, so the two
// differ only in the transport between the halves: a fresh TLS connection
// per session here, a yamux stream on one long-lived TLS connection there.
// The certificate is of the same kind as the tunnel server's (ECDSA P-256
// from auth.CA.IssueServerCert); relay-in authenticates relay-out but
// presents no certificate itself, which makes the relay's handshake a little
// cheaper than the tunnel's mutual one. Neither matters for bulk or pgbench
// throughput, where sessions are long.
type Relay struct {
	// Static after StartRelay.
	target    string
	in, out   net.Listener
	clientTLS *tls.Config
	serverTLS *tls.Config

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// StartRelay starts both halves of a relay to target on loopback ports. It
// runs until Close or until ctx is done.
func StartRelay(ctx context.Context, target string) (*Relay, error) {
	clientTLS, serverTLS, err := relayTLS()
	if err != nil {
		return nil, err
	}
	out, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("relay-out listen: %w", err)
	}
	in, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("relay-in listen: %w", err)
	}
	r := &Relay{target: target, in: in, out: out, clientTLS: clientTLS, serverTLS: serverTLS}
	r.ctx, r.cancel = context.WithCancel(ctx)
	r.wg.Add(3)
	go r.acceptLoop(in, r.serveIn)
	go r.acceptLoop(out, r.serveOut)
	go func() {
		defer r.wg.Done()
		<-r.ctx.Done()
		in.Close()
		out.Close()
	}()
	return r, nil
}

// Addr is where clients connect: relay-in.
func (r *Relay) Addr() string { return r.in.Addr().String() }

// Close stops accepting, ends the sessions in progress and waits for them.
func (r *Relay) Close() error {
	r.once.Do(func() {
		r.cancel()
		r.wg.Wait()
	})
	return nil
}

// relayTLS makes a CA, a server certificate for 127.0.0.1, and the two TLS
// configurations: TLS 1.3 only, full-size records from the first byte as the
// tunnel's transport has, no session resumption.
func relayTLS() (client, server *tls.Config, err error) {
	ca, err := auth.NewCA("tunnel-bench reference relay CA", 24*time.Hour)
	if err != nil {
		return nil, nil, fmt.Errorf("relay CA: %w", err)
	}
	certPEM, keyPEM, err := ca.IssueServerCert([]string{"127.0.0.1"}, 24*time.Hour)
	if err != nil {
		return nil, nil, fmt.Errorf("relay certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("relay certificate: %w", err)
	}
	roots, err := auth.ReadCertPool(ca.CertPEM())
	if err != nil {
		return nil, nil, fmt.Errorf("relay CA: %w", err)
	}
	server = &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		Certificates:                []tls.Certificate{cert},
		SessionTicketsDisabled:      true,
		DynamicRecordSizingDisabled: true,
	}
	client = &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		RootCAs:                     roots,
		ServerName:                  "127.0.0.1",
		DynamicRecordSizingDisabled: true,
	}
	return client, server, nil
}

func (r *Relay) acceptLoop(ln net.Listener, serve func(net.Conn)) {
	defer r.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if r.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: a benchmark can wait.
			select {
			case <-time.After(10 * time.Millisecond):
				continue
			case <-r.ctx.Done():
				return
			}
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			serve(c)
		}()
	}
}

// serveIn relays one client session: a new TLS connection to relay-out.
func (r *Relay) serveIn(client net.Conn) {
	ctx, cancel := context.WithTimeout(r.ctx, relayHandshakeTimeout)
	d := tls.Dialer{Config: r.clientTLS}
	up, err := d.DialContext(ctx, "tcp", r.out.Addr().String())
	cancel()
	if err != nil {
		client.Close()
		return
	}
	splice.Splice(r.ctx, client, up, splice.Options{})
}

// serveOut ends one TLS connection from relay-in at the target.
func (r *Relay) serveOut(raw net.Conn) {
	ctx, cancel := context.WithTimeout(r.ctx, relayHandshakeTimeout)
	defer cancel()
	tc := tls.Server(raw, r.serverTLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return
	}
	var d net.Dialer
	target, err := d.DialContext(ctx, "tcp", r.target)
	if err != nil {
		tc.Close()
		return
	}
	cancel()
	splice.Splice(r.ctx, tc, target, splice.Options{})
}
