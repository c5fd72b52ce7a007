package e2e

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/harness"
	"github.com/tunnelrelay/tunnel/internal/testutil/faultproxy"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// transport is one of the two ways an agent reaches the server: yamux over
// TLS on TCP, or QUIC on UDP to the same port number. Every test of the
// core runs over each (forEachTransport), so a promise kept over one is
// kept over the other.
type transport struct {
	name string // harness.AgentConfig.Transport, and the subtest's name
}

// transports is the one table of transports.
var transports = []transport{{name: agent.TransportTLS}, {name: agent.TransportQUIC}}

// forEachTransport runs f as a subtest per transport. The subtests run one
// after the other: several tests check goroutine counts, which only mean
// something while nothing else runs.
func forEachTransport(t *testing.T, f func(t *testing.T, tr transport)) {
	t.Helper()
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { f(t, tr) })
	}
}

func (tr transport) quic() bool { return tr.name == agent.TransportQUIC }

// faults is a fault proxy in front of the server's agent port:
// faultproxy.Proxy for TLS, faultproxy.UDPProxy for QUIC. Over TCP a stall
// holds bytes back; over UDP it drops datagrams, and QUIC retransmits after
// Resume. Either way the link goes silent without an error.
type faults interface {
	Addr() string
	Stall()
	Resume()
	DropAll()
	SetRefuse(bool)
	SetLatency(time.Duration)
}

var (
	_ faults = (*faultproxy.Proxy)(nil)
	_ faults = (*faultproxy.UDPProxy)(nil)
)

// proxy starts a fault proxy for the transport in front of target (a
// server's agent address, which is the same for TCP and UDP).
func (tr transport) proxy(t *testing.T, target string) faults {
	t.Helper()
	if tr.quic() {
		return faultproxy.NewUDP(t, target)
	}
	return faultproxy.New(t, target)
}

// via returns cfg with the transport's connection attempts dialing addr()
// instead of the server.
func (tr transport) via(cfg harness.AgentConfig, addr func() string) harness.AgentConfig {
	if tr.quic() {
		cfg.ViaQUIC = addr
	} else {
		cfg.Via = addr
	}
	return cfg
}

// dial connects to a server's agent address over the transport, as an
// agent would, and returns the session before any tunnel protocol.
func (tr transport) dial(ctx context.Context, addr string, tlsConf *tls.Config, cfg *mux.Config) (mux.Session, error) {
	if tr.quic() {
		return mux.DialQUIC(ctx, addr, tlsConf, cfg)
	}
	return mux.DialTLS(ctx, addr, tlsConf, cfg)
}
