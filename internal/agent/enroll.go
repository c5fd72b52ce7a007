package agent

import (
	"context"
	"crypto/x509"

	"github.com/tunnelrelay/tunnel/internal/proto"
)

// Enrollment is what the server said to an enrolling agent.
type Enrollment struct {
	// Agent is the name the token was issued for.
	Agent string
	// Fingerprint is the key the server registered for it.
	Fingerprint string
	// ServerChain is the certificate chain the server presented, leaf
	// first: where `tunnel-agent enroll` finds the CA it pins.
	ServerChain []*x509.Certificate
}

// Enroll registers the key of Options.TLSConfig's client certificate with a
// one-time enrollment token: it connects over TLS (the agent's TLS dial
// path, whatever Options.Transport says), sends Enroll in place of Hello,
// and returns what the server answered. A refusal is a *proto.Refuse.
// Options.TLSConfig decides whether the server is trusted (see
// auth.PinnedCAConfig); Targets play no part.
func (a *Agent) Enroll(ctx context.Context, token string) (*Enrollment, error) {
	sess, err := a.dial(ctx, TransportTLS)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	e := &proto.Enroll{Version: proto.Version, AgentVersion: a.opt.Version, Token: token}
	res, err := a.firstExchange(ctx, sess, proto.FrameEnroll, e, proto.FrameEnrolled, "enrollment")
	if err != nil {
		return nil, err
	}
	var ok proto.Enrolled
	if err := proto.DecodeJSON(proto.FrameEnrolled, res.answer, &ok); err != nil {
		return nil, err
	}
	chain := sess.ConnectionState().PeerCertificates
	// Hang up at once: the server waits for it before it closes.
	sess.Close()
	a.log.Debug("enrolled", "agent", ok.Agent, "fingerprint", ok.Fingerprint)
	return &Enrollment{Agent: ok.Agent, Fingerprint: ok.Fingerprint, ServerChain: chain}, nil
}
