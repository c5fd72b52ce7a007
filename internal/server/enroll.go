package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/metrics"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/internal/store"
	"github.com/tunnelrelay/tunnel/pkg/auth"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// Lifetimes of an enrollment token.
const (
	// DefaultEnrollTokenTTL is how long a token lives unless asked otherwise.
	DefaultEnrollTokenTTL = 24 * time.Hour
	// MinEnrollTokenTTL and MaxEnrollTokenTTL bound the lifetime asked for.
	MinEnrollTokenTTL = time.Minute
	MaxEnrollTokenTTL = 30 * 24 * time.Hour
)

// IssueEnrollToken makes a one-time enrollment token for the agent name,
// registering the agent without a key if it does not exist (see
// admin.API). Only the token's hash is stored; the token is in the answer
// alone, and never logged.
func (s *Server) IssueEnrollToken(ctx context.Context, name string, req admin.EnrollTokenRequest) (*admin.EnrollToken, error) {
	if err := auth.CheckName("agent", name); err != nil {
		return nil, invalid(err)
	}
	ttl := DefaultEnrollTokenTTL
	if req.ExpiresInSeconds != 0 {
		if req.ExpiresInSeconds < int64(MinEnrollTokenTTL/time.Second) || req.ExpiresInSeconds > int64(MaxEnrollTokenTTL/time.Second) {
			return nil, invalid(fmt.Errorf("agent %q: an enrollment token lives %v to %v (%d to %d seconds), not %d seconds",
				name, MinEnrollTokenTTL, MaxEnrollTokenTTL, int64(MinEnrollTokenTTL/time.Second), int64(MaxEnrollTokenTTL/time.Second), req.ExpiresInSeconds))
		}
		ttl = time.Duration(req.ExpiresInSeconds) * time.Second
	}
	tok, err := auth.NewEnrollToken()
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	created, err := s.store.IssueEnrollToken(ctx, store.EnrollToken{
		ID:        tok.ID,
		Agent:     name,
		Hash:      tok.Hash(),
		CreatedAt: now,
		ExpiresAt: now.Add(ttl),
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("enrollment token issued", logging.KeyAgent, name, "token_id", tok.ID,
		"expires", now.Add(ttl).Format(time.RFC3339), "agent_created", created)
	return &admin.EnrollToken{
		Agent:         name,
		Token:         tok.Reveal(),
		TokenID:       tok.ID,
		Expires:       now.Add(ttl),
		CAFingerprint: *s.caFingerprint.Load(),
		Created:       created,
	}, nil
}

// serveEnroll answers an agent whose first frame is Enroll: it registers
// the key the TLS handshake proved for the token's agent, answers Enrolled
// and closes the connection; or refuses with bad_token. The client
// certificate's name plays no part. The token is never logged.
func (s *Server) serveEnroll(sess mux.Session, ctl mux.Stream, id auth.Identity, e *proto.Enroll) {
	remote := remoteAddr(sess)
	log := s.log.With(logging.KeyRemote, sess.RemoteAddr().String(), "transport", sess.Transport())
	refuse := func(code proto.RefuseCode, msg string) {
		s.metrics.Handshake(string(code))
		log.Warn("enrollment refused", logging.KeyReason, msg, "code", string(code))
		s.refuse(sess, ctl, code, msg)
	}
	if e.Version < 2 {
		refuse(proto.RefuseUnsupportedVersion, fmt.Sprintf("enrollment needs protocol version 2, the agent speaks %d: upgrade tunnel-agent", e.Version))
		return
	}
	if !s.enrollFails.allow(remote, time.Now()) {
		refuse(proto.RefuseBadToken, fmt.Sprintf("too many failed enrollment attempts from %s; wait a minute and try again", remote))
		return
	}
	tok, err := auth.ParseEnrollToken(e.Token)
	if err != nil {
		s.enrollFails.fail(remote, time.Now())
		refuse(proto.RefuseBadToken, err.Error())
		return
	}
	log = log.With("token_id", tok.ID)
	name, err := s.store.UseEnrollToken(s.ctx, tok.ID, tok.Matches, id.Fingerprint, time.Now())
	if err != nil {
		code, msg := enrollRefusal(err)
		if code == proto.RefuseBadToken {
			s.enrollFails.fail(remote, time.Now())
		} else {
			log.Error("enrollment failed", logging.KeyErr, err)
		}
		refuse(code, msg)
		return
	}
	log = log.With(logging.KeyAgent, name)
	log.Info("agent enrolled", "fingerprint", id.Fingerprint, "agent_version", e.AgentVersion)
	s.metrics.Handshake(metrics.HandshakeEnrolled)
	ctl.SetWriteDeadline(time.Now().Add(s.opt.HandshakeTimeout))
	if err := proto.WriteJSON(ctl, proto.FrameEnrolled, &proto.Enrolled{Agent: name, Fingerprint: id.Fingerprint}); err != nil {
		// The agent hangs up as soon as it has the answer, which can
		// race with the end of this write. If it did not get it, it says
		// so; the key is registered either way.
		log.Debug("answer to enrollment not confirmed", logging.KeyErr, err)
		sess.Close()
		return
	}
	s.closeWhenPeerDone(sess, ctl)
}

// enrollRefusal turns a UseEnrollToken error into what the agent is told.
// Only a holder of the token's secret gets past "unknown", so the others
// may name the agent.
func enrollRefusal(err error) (proto.RefuseCode, string) {
	const fresh = "ask the server's operator for a new one (tunnel-server agent add NAME --token)"
	switch {
	case errors.Is(err, store.ErrNotFound):
		return proto.RefuseBadToken, "unknown enrollment token (mistyped, replaced by a newer one, or its agent was removed); " + fresh
	case errors.Is(err, store.ErrTokenExpired):
		return proto.RefuseBadToken, "the enrollment token has expired; " + fresh
	case errors.Is(err, store.ErrTokenUsed):
		return proto.RefuseBadToken, "the enrollment token was used already and the agent has a key; to enroll it again, " +
			"the operator removes it (tunnel-server agent remove NAME) and adds it anew with --token"
	}
	return proto.RefuseInternal, "the server could not check the enrollment token; try again"
}

// remoteAddr returns the IP address of the peer of sess, or the zero Addr.
func remoteAddr(sess mux.Session) netip.Addr {
	ap, err := netip.ParseAddrPort(sess.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Bounds of failed enrollment attempts. A token's secret cannot be guessed
// anyway; the limit keeps a peer from making the server do store work in a
// loop, cheaply.
const (
	enrollFailLimit  = 10          // failed attempts per address per window
	enrollFailWindow = time.Minute // the window
	enrollFailTrack  = 4096        // addresses tracked at most
)

// failLimiter counts failed attempts per peer address in fixed windows.
// The zero value is ready to use.
type failLimiter struct {
	mu    sync.Mutex
	fails map[netip.Addr]*failCount
}

type failCount struct {
	start time.Time
	n     int
}

// allow reports whether addr may try now.
func (l *failLimiter) allow(addr netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.fails[addr]
	return c == nil || now.Sub(c.start) >= enrollFailWindow || c.n < enrollFailLimit
}

// fail counts a failed attempt from addr.
func (l *failLimiter) fail(addr netip.Addr, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fails == nil {
		l.fails = map[netip.Addr]*failCount{}
	}
	c := l.fails[addr]
	if c == nil || now.Sub(c.start) >= enrollFailWindow {
		if c == nil && len(l.fails) >= enrollFailTrack {
			l.prune(now)
		}
		c = &failCount{start: now}
		l.fails[addr] = c
	}
	c.n++
}

// prune forgets finished windows, and everything if that is not enough: the
// table stays bounded, at the price of forgetting some counts under a flood
// from many addresses.
func (l *failLimiter) prune(now time.Time) {
	for a, c := range l.fails {
		if now.Sub(c.start) >= enrollFailWindow {
			delete(l.fails, a)
		}
	}
	if len(l.fails) >= enrollFailTrack {
		clear(l.fails)
	}
}
