package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/internal/store"
	"github.com/tunnelrelay/tunnel/pkg/auth"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// Key rotation, server side:
//
//  1. RotateAgentKey sends RotateKey on the agent's live connection (or the
//     agent starts by itself: `tunnel-agent rotate` sends NewKey on a probe
//     connection).
//  2. The agent makes a key and sends NewKey; acceptNewKey stores it as the
//     agent's pending key and answers KeyAccepted. Both keys are accepted
//     from then on.
//  3. The agent stores the key and connects with it; when that connection
//     becomes the agent's live one, promoteKey makes the pending key the
//     agent's key, and the old one is refused from then on. The old
//     connection finishes its sessions (see claim).

// rotateTimeout bounds how long RotateAgentKey waits for the agent to
// connect with its new key; it stays below admin.Client's request timeout.
const rotateTimeout = 20 * time.Second

// rotatePoll is how often RotateAgentKey looks for the promotion.
const rotatePoll = 50 * time.Millisecond

// RotateAgentKey asks the agent's live connection for a new key and waits
// until the agent uses it, or rotateTimeout.
func (s *Server) RotateAgentKey(ctx context.Context, name string) (*admin.RotateKeyResult, error) {
	a, err := s.store.Agent(ctx, name)
	if err != nil {
		return nil, err
	}
	if a.Fingerprint == "" {
		return nil, conflict(fmt.Errorf("agent %q waits for enrollment: it has no key to rotate", name))
	}
	ac := s.liveAgent(name)
	switch {
	case ac == nil:
		return nil, conflict(fmt.Errorf("agent %q is not connected; it rotates its key over its live connection "+
			"(or run `tunnel-agent rotate` on its host)", name))
	case ac.proto < 2:
		return nil, conflict(fmt.Errorf("agent %q speaks protocol version %d, which cannot rotate keys: upgrade tunnel-agent", name, ac.proto))
	case !ac.rotating.CompareAndSwap(false, true):
		return nil, conflict(fmt.Errorf("agent %q: a key rotation is already under way", name))
	}
	defer ac.rotating.Store(false)
	if err := ac.writeJSON(proto.FrameRotateKey, &proto.RotateKey{}); err != nil {
		return nil, conflict(fmt.Errorf("agent %q: could not ask for a new key: %w", name, err))
	}
	ac.log.Info("asked the agent for a new key", "fingerprint", a.Fingerprint)

	ctx, cancel := context.WithTimeout(ctx, rotateTimeout)
	defer cancel()
	tick := time.NewTicker(rotatePoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, s.rotateTimedOut(name, a.Fingerprint)
		case <-tick.C:
		}
		cur, err := s.store.Agent(ctx, name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("agent %q was removed during its key rotation: %w", name, err)
		case err != nil && ctx.Err() == nil:
			return nil, err
		case err == nil && cur.Fingerprint != a.Fingerprint:
			return &admin.RotateKeyResult{Agent: name, OldFingerprint: a.Fingerprint, Fingerprint: cur.Fingerprint}, nil
		}
	}
}

// rotateTimedOut says how far a rotation got.
func (s *Server) rotateTimedOut(name, old string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), time.Second)
	defer cancel()
	cur, err := s.store.Agent(ctx, name)
	if err == nil && cur.PendingFingerprint != "" {
		return admin.Timeout(fmt.Errorf("agent %q announced its new key %s but has not connected with it within %v; "+
			"its old key %s stays valid until it does (see the agent's log)", name, cur.PendingFingerprint, rotateTimeout, old))
	}
	return admin.Timeout(fmt.Errorf("agent %q did not announce a new key within %v; its key %s is unchanged "+
		"(an agent started without a config file it may rewrite cannot rotate: see its log)", name, rotateTimeout, old))
}

// acceptNewKey handles a NewKey from agent name, whose connection proved
// one of its keys, and returns the KeyAccepted to answer.
func (s *Server) acceptNewKey(name string, payload []byte, log *slog.Logger) *proto.KeyAccepted {
	var nk proto.NewKey
	if err := proto.DecodeJSON(proto.FrameNewKey, payload, &nk); err != nil {
		return &proto.KeyAccepted{Error: "the new key message does not parse"}
	}
	reply := &proto.KeyAccepted{Fingerprint: nk.Fingerprint}
	if !auth.ValidFingerprint(nk.Fingerprint) {
		reply.Error = fmt.Sprintf("%q is not a key fingerprint", proto.Clip(nk.Fingerprint, 100))
		return reply
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opt.HandshakeTimeout)
	defer cancel()
	if err := s.store.SetPendingFingerprint(ctx, name, nk.Fingerprint); err != nil {
		log.Warn("new agent key refused", "fingerprint", nk.Fingerprint, logging.KeyErr, err)
		if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) {
			reply.Error = err.Error()
		} else {
			reply.Error = "the server could not store the new key; try again"
		}
		return reply
	}
	log.Info("agent announced a new key", "fingerprint", nk.Fingerprint)
	return reply
}

// serveProbe serves what may follow Welcome on a probe connection: nothing
// (tunnel-agent check hangs up), or one NewKey (tunnel-agent rotate).
func (s *Server) serveProbe(ctl mux.Stream, id auth.Identity, log *slog.Logger) {
	ctl.SetReadDeadline(time.Now().Add(s.opt.HandshakeTimeout))
	defer ctl.SetReadDeadline(time.Time{})
	t, p, err := proto.ReadFrame(ctl, s.opt.MaxHeaderSize)
	if err != nil || t != proto.FrameNewKey {
		return
	}
	reply := s.acceptNewKey(id.Name, p, log)
	ctl.SetWriteDeadline(time.Now().Add(s.opt.HandshakeTimeout))
	proto.WriteJSON(ctl, proto.FrameKeyAccepted, reply)
}

// promoteKey makes the pending key that ac proved the agent's key.
func (s *Server) promoteKey(ac *agentConn) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.opt.HandshakeTimeout)
	defer cancel()
	if err := s.store.PromoteFingerprint(ctx, ac.name, ac.key); err != nil {
		return err
	}
	ac.log.Info("agent key rotated: the new key is in use, the old one is refused from now on", "fingerprint", ac.key)
	return nil
}

// agentConns returns the agent's live connection and the older ones that
// still carry sessions (a connection replaced by a newer one of the same
// agent process finishes its sessions first).
func (s *Server) agentConns(name string) []*agentConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*agentConn
	if ac := s.agents[name]; ac != nil {
		out = append(out, ac)
	}
	for _, ss := range s.sessions {
		if ss.agent.name == name && !containsConn(out, ss.agent) {
			out = append(out, ss.agent)
		}
	}
	return out
}

func containsConn(list []*agentConn, ac *agentConn) bool {
	for _, c := range list {
		if c == ac {
			return true
		}
	}
	return false
}
