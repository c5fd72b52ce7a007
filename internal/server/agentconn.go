package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/metrics"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/pkg/auth"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// agentConn is one welcomed agent connection.
type agentConn struct {
	// Static after construction.
	srv       *Server
	name      string
	instance  string
	version   string
	proto     int // the protocol version of the connection
	sess      mux.Session
	ctl       mux.Stream
	since     time.Time
	remote    string
	transport string
	fallback  string // why the agent is on TLS although it prefers QUIC
	key       string // fingerprint of the key the connection proved
	log       *slog.Logger

	writeMu sync.Mutex // one frame at a time on ctl

	sessions atomic.Int64 // open data streams
	rtt      atomic.Int64 // last heartbeat round trip, ns
	rotating atomic.Bool  // a key rotation asked for by the server is under way

	targets  atomic.Pointer[map[string]bool] // declared target names; replaced by a Targets frame
	draining atomic.Bool                     // the agent said it is stopping: no new sessions

	recvMu sync.Mutex
	recvCh chan struct{} // closed and replaced whenever a frame arrives

	endOnce   sync.Once
	ended     chan struct{} // closed by end
	endReason string        // set before ended is closed

	kickOnce   sync.Once
	kicked     chan struct{} // closed by kick
	kickReason string        // set before kicked is closed

	// retired is set when a newer connection from the same agent process
	// took this one's place: it gets no new sessions, and ends once the
	// sessions it has are done (retireReason says why).
	retired      atomic.Bool
	retireMu     sync.Mutex
	retireReason string
}

// serveAgent runs one agent connection from handshake to end.
func (s *Server) serveAgent(sess mux.Session) {
	start := time.Now()
	log := s.log.With(logging.KeyRemote, sess.RemoteAddr().String(), "transport", sess.Transport())
	id, err := auth.PeerIdentity(sess.ConnectionState())
	if err != nil {
		log.Info("agent refused", logging.KeyReason, err.Error())
		s.metrics.Handshake(metrics.HandshakeFailed)
		sess.Close()
		return
	}
	log = log.With(logging.KeyAgent, id.Name)

	ctl, hello, enroll, err := s.readHello(sess)
	if ctl != nil {
		var guard sync.WaitGroup
		guard.Add(1)
		go func() { defer guard.Done(); s.refuseExtraStreams(sess, log) }()
		defer guard.Wait()
		defer sess.Close()
	}
	refuse := func(code proto.RefuseCode, msg string) {
		s.metrics.Handshake(string(code))
		log.Warn("agent refused", logging.KeyReason, msg, "code", string(code))
		s.refuse(sess, ctl, code, msg)
	}
	switch {
	case errors.Is(err, proto.ErrFrameTooLarge), errors.Is(err, proto.ErrMalformed), errors.Is(err, proto.ErrUnexpected):
		// The agent can be told: its hello, which comes from its config,
		// will never do.
		refuse(proto.RefuseBadHello, fmt.Sprintf("bad hello: %v (limits.max_header_size is %d bytes)", err, s.opt.MaxHeaderSize))
		return
	case err != nil:
		log.Info("agent handshake failed", logging.KeyErr, err)
		s.metrics.Handshake(metrics.HandshakeFailed)
		sess.Close()
		return
	case enroll != nil:
		s.serveEnroll(sess, ctl, id, enroll)
		return
	}
	if hello.Version < proto.MinVersion {
		refuse(proto.RefuseUnsupportedVersion, fmt.Sprintf("protocol version %d is too old; this server needs %d or newer: upgrade tunnel-agent", hello.Version, proto.MinVersion))
		return
	}
	if err := hello.Validate(); err != nil {
		refuse(proto.RefuseBadHello, err.Error())
		return
	}
	pendingKey, err := s.verifier.Verify(s.ctx, id)
	if err != nil {
		code, msg := refusalFor(id.Name, err)
		refuse(code, msg)
		return
	}
	welcome := &proto.Welcome{
		Version:             min(hello.Version, proto.Version),
		HeartbeatIntervalMS: s.opt.HeartbeatInterval.Milliseconds(),
		HeartbeatTimeoutMS:  s.opt.HeartbeatTimeout.Milliseconds(),
		ServerVersion:       s.opt.Version,
	}
	if hello.Probe {
		// tunnel-agent check: the credential is good; this connection does
		// not become the agent's live one.
		ctl.SetWriteDeadline(time.Now().Add(s.opt.HandshakeTimeout))
		if err := proto.WriteJSON(ctl, proto.FrameWelcome, welcome); err == nil {
			log.Info("agent check succeeded")
			s.metrics.Handshake(metrics.HandshakeProbe)
			if welcome.Version >= 2 {
				// tunnel-agent rotate announces its new key here.
				s.serveProbe(ctl, id, log)
			}
		} else {
			s.metrics.Handshake(metrics.HandshakeFailed)
		}
		s.closeWhenPeerDone(sess, ctl)
		return
	}

	ac := &agentConn{
		srv:       s,
		name:      id.Name,
		instance:  hello.Instance,
		version:   hello.AgentVersion,
		proto:     welcome.Version,
		sess:      sess,
		ctl:       ctl,
		since:     time.Now(),
		remote:    sess.RemoteAddr().String(),
		transport: sess.Transport(),
		fallback:  proto.ClipFallback(hello.Fallback),
		key:       id.Fingerprint,
		log:       log,
		recvCh:    make(chan struct{}),
		ended:     make(chan struct{}),
		kicked:    make(chan struct{}),
	}
	ac.setTargets(hello.Targets)
	if pendingKey {
		// The agent proved its new key: from now on only that key is
		// accepted. Before claim, so that a failure leaves the agent's
		// current connection as it is.
		if err := s.promoteKey(ac); err != nil {
			log.Error("agent key not promoted", logging.KeyErr, err)
			refuse(proto.RefuseInternal, "the server could not register the agent's new key; it will be retried")
			return
		}
	}
	// Once claimed, the connection is the agent's live one and others may
	// write to it (a rotation, a reconnect request); nothing may reach the
	// agent before its Welcome.
	ac.writeMu.Lock()
	if err := s.claim(ac); err != nil {
		ac.writeMu.Unlock()
		refuse(refuseCodeOf(err), err.Error())
		return
	}
	ctl.SetWriteDeadline(time.Now().Add(s.opt.HandshakeTimeout))
	err = proto.WriteJSON(ctl, proto.FrameWelcome, welcome)
	ac.writeMu.Unlock()
	if err != nil {
		s.release(ac)
		sess.Close()
		log.Info("agent handshake failed", logging.KeyErr, err)
		s.metrics.Handshake(metrics.HandshakeFailed)
		return
	}
	s.metrics.AgentConnected(id.Name)
	attrs := []any{"version", hello.AgentVersion, "targets", hello.Targets, "handshake", time.Since(start).Round(time.Millisecond)}
	if ac.fallback != "" {
		attrs = append(attrs, "fallback", ac.fallback)
	}
	log.Info("agent connected", attrs...)

	reason := ac.run(s.ctx)

	s.release(ac)
	log.Info("agent disconnected", logging.KeyReason, reason, logging.KeyDuration, time.Since(ac.since).Round(time.Second))
}

// readHello waits for the control stream and its Hello, together within
// one handshake timeout; Close cuts the wait short. An enrolling agent sends
// Enroll instead, returned in place of the Hello.
func (s *Server) readHello(sess mux.Session) (mux.Stream, *proto.Hello, *proto.Enroll, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.opt.HandshakeTimeout)
	defer cancel()
	ctl, err := sess.AcceptStream(ctx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("no control stream: %w", err)
	}
	stop := mux.BindDeadline(ctx, ctl)
	defer stop()
	t, payload, err := proto.ReadFrame(ctl, s.opt.MaxHeaderSize)
	if err != nil {
		return ctl, nil, nil, fmt.Errorf("read hello: %w", err)
	}
	var (
		h proto.Hello
		e proto.Enroll
	)
	switch t {
	case proto.FrameHello:
		err = proto.DecodeJSON(t, payload, &h)
	case proto.FrameEnroll:
		err = proto.DecodeJSON(t, payload, &e)
	default:
		return ctl, nil, nil, fmt.Errorf("%w: %s, want hello", proto.ErrUnexpected, t)
	}
	if err != nil {
		return ctl, nil, nil, err
	}
	if !stop() {
		// The timeout fired just now and has set a past deadline.
		return ctl, nil, nil, fmt.Errorf("read hello: %w", ctx.Err())
	}
	ctl.SetDeadline(time.Time{})
	if t == proto.FrameEnroll {
		return ctl, nil, &e, nil
	}
	return ctl, &h, nil, nil
}

// refuseExtraStreams ends the session when the agent opens a stream beyond
// its control stream: the protocol has none, and streams nobody reads would
// hold buffers (up to yamux's initial window each) for as long as the
// session lives; the peer may not even be authenticated yet.
func (s *Server) refuseExtraStreams(sess mux.Session, log *slog.Logger) {
	st, err := sess.AcceptStream(s.ctx)
	if err != nil {
		return
	}
	st.Reset()
	log.Warn("protocol violation: the agent opened an unexpected stream; closing its connection")
	sess.Close()
}

// refuse tells the agent why it is refused and closes the connection once
// the agent has read it (or after a short wait): closing at once could
// reset the connection before the reason arrives.
func (s *Server) refuse(sess mux.Session, ctl mux.Stream, code proto.RefuseCode, msg string) {
	ctl.SetWriteDeadline(time.Now().Add(s.opt.HandshakeTimeout))
	if err := proto.WriteJSON(ctl, proto.FrameRefuse, &proto.Refuse{Code: code, Message: msg}); err != nil {
		sess.Close()
		return
	}
	s.closeWhenPeerDone(sess, ctl)
}

// refuseLinger is how long the server waits for an agent to hang up after a
// final message before it hangs up itself.
const refuseLinger = 2 * time.Second

func (s *Server) closeWhenPeerDone(sess mux.Session, ctl mux.Stream) {
	ctl.CloseWrite()
	t := time.NewTimer(refuseLinger)
	defer t.Stop()
	select {
	case <-sess.Done():
	case <-t.C:
	case <-s.ctx.Done():
	}
	sess.Close()
}

var (
	errAlreadyConnected = errors.New("already connected")
	errShuttingDown     = errors.New("server is shutting down")
)

func refuseCodeOf(err error) proto.RefuseCode {
	if errors.Is(err, errShuttingDown) {
		return proto.RefuseShuttingDown
	}
	return proto.RefuseAlreadyConnected
}

// refusalFor turns a Verify error into what the agent is told.
func refusalFor(name string, err error) (proto.RefuseCode, string) {
	switch {
	case errors.Is(err, auth.ErrUnknownAgent):
		return proto.RefuseUnknownAgent, fmt.Sprintf("agent %q is not registered on this server (was it removed?)", name)
	case errors.Is(err, auth.ErrKeyMismatch):
		return proto.RefuseKeyMismatch, fmt.Sprintf("agent %q: this key is not the one registered for the agent", name)
	case errors.Is(err, auth.ErrAgentDisabled):
		return proto.RefuseAgentDisabled, fmt.Sprintf("agent %q is disabled on this server", name)
	}
	return proto.RefuseInternal, "the server could not check the agent's credential; it will be retried"
}

// claim makes ac the agent's live connection. An existing connection is
// replaced when it comes from the same agent process (which has given up on
// it) or no longer answers a ping; a healthy one from another process keeps
// its place and ac is refused.
func (s *Server) claim(ac *agentConn) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return errShuttingDown
	}
	delete(s.restarting, ac.name)
	old := s.agents[ac.name]
	if old == nil {
		s.agents[ac.name] = ac
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()

	sameProcess := ac.instance != "" && ac.instance == old.instance
	// A draining connection belongs to an agent that is stopping; its
	// successor (a restarted agent) takes its place while it finishes.
	handOver := sameProcess || old.draining.Load()
	if !handOver && old.alive(s.opt.LivenessTimeout) {
		return fmt.Errorf("agent %q is %w from %s since %s; a second copy of the same agent cannot connect",
			ac.name, errAlreadyConnected, old.remote, old.since.UTC().Format(time.RFC3339))
	}
	s.mu.Lock()
	if cur := s.agents[ac.name]; cur != old && cur != nil {
		s.mu.Unlock()
		return fmt.Errorf("agent %q is %w from %s", ac.name, errAlreadyConnected, cur.remote)
	}
	s.agents[ac.name] = ac
	s.mu.Unlock()
	if handOver {
		// The agent moved to a new connection (a reconnect, from TLS to
		// QUIC, to a new key), or a new agent process follows one that
		// is stopping. Sessions that started on the old one finish
		// there; it ends when they are done, or at once if it carries
		// none, or when the agent hangs up.
		why := "the agent reconnected"
		if !sameProcess {
			why = "the agent was stopping"
		}
		old.retire("replaced by a new connection from " + ac.remote + ": " + why)
		ac.log.Info("replacing connection", "old_remote", old.remote, logging.KeyReason, why,
			"old_sessions", old.sessions.Load())
		return nil
	}
	why := "no answer to a liveness ping"
	old.end("replaced by a new connection from " + ac.remote + ": " + why)
	ac.log.Info("replacing stale connection", "old_remote", old.remote, logging.KeyReason, why)
	return nil
}

// retire ends ac once it carries no session (checked at each heartbeat, and
// now).
func (ac *agentConn) retire(reason string) {
	ac.retireMu.Lock()
	ac.retireReason = reason
	ac.retireMu.Unlock()
	ac.retired.Store(true)
	if ac.sessions.Load() == 0 {
		ac.end(reason)
	}
}

// release forgets ac if it is still the agent's live connection.
func (s *Server) release(ac *agentConn) {
	s.mu.Lock()
	if s.agents[ac.name] == ac {
		delete(s.agents, ac.name)
		if ac.draining.Load() && !ac.wasKicked() {
			s.restarting[ac.name] = time.Now()
		}
	}
	s.mu.Unlock()
}

// liveAgent returns the agent's live connection, or nil.
func (s *Server) liveAgent(name string) *agentConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.agents[name]
}

// run serves heartbeats until the connection ends and returns why it ended.
//
// The connection counts as dead when no byte at all has arrived on it for
// the heartbeat timeout: the pings make sure bytes flow while it is idle, and
// under load the data itself proves it alive, even when a ping waits behind
// megabytes of queued data.
func (ac *agentConn) run(ctx context.Context) string {
	opt := &ac.srv.opt
	readErr := make(chan error, 1)
	go func() { readErr <- ac.readLoop() }()

	tick := time.NewTicker(opt.HeartbeatInterval)
	defer tick.Stop()
	watch := mux.NewWatchdog(ac.sess, time.Now())
	var reason string
loop:
	for {
		select {
		case now := <-tick.C:
			if idle := watch.Idle(now); idle >= opt.HeartbeatTimeout {
				reason = fmt.Sprintf("nothing received for %v (heartbeat timeout)", idle.Round(time.Millisecond))
				break loop
			}
			if ac.retired.Load() && ac.sessions.Load() == 0 {
				ac.retireMu.Lock()
				reason = ac.retireReason
				ac.retireMu.Unlock()
				break loop
			}
			if err := ac.write(proto.FramePing, proto.AppendSeq(nil, ac.srv.since())); err != nil {
				reason = "heartbeat not sent: " + err.Error()
				break loop
			}
		case err := <-readErr:
			readErr = nil
			reason = "control stream: " + err.Error()
			break loop
		case <-ac.sess.Done():
			reason = "connection closed"
			break loop
		case <-ac.ended:
			reason = ac.endReason
			break loop
		case <-ac.kicked:
			// The agent was told why; give it a moment to read that and
			// hang up, so the reason is not lost to a reset.
			reason = ac.kickReason
			linger := time.NewTimer(refuseLinger)
			select {
			case <-ac.sess.Done():
			case <-linger.C:
			case <-ctx.Done():
			}
			linger.Stop()
			break loop
		case <-ctx.Done():
			reason = "server shutting down"
			break loop
		}
	}
	ac.end(reason)
	if readErr != nil {
		<-readErr
	}
	return reason
}

// readLoop reads the control stream until it fails.
func (ac *agentConn) readLoop() error {
	for {
		t, p, err := proto.ReadFrame(ac.ctl, ac.srv.opt.MaxHeaderSize)
		if err != nil {
			return err
		}
		ac.markRecv()
		switch t {
		case proto.FramePong:
			if sent, err := proto.ParseSeq(p); err == nil {
				if rtt := ac.srv.since() - sent; rtt < uint64(time.Hour) {
					ac.rtt.Store(int64(rtt))
					ac.srv.metrics.HeartbeatRTT(time.Duration(rtt))
				}
			}
		case proto.FramePing:
			if err := ac.write(proto.FramePong, p); err != nil {
				return err
			}
		case proto.FrameNewKey:
			if ac.proto < 2 {
				return fmt.Errorf("%w: %s on a version %d connection", proto.ErrUnexpected, t, ac.proto)
			}
			reply := ac.srv.acceptNewKey(ac.name, p, ac.log)
			if err := ac.writeJSON(proto.FrameKeyAccepted, reply); err != nil {
				return err
			}
		case proto.FrameDraining:
			var d proto.Draining
			if err := proto.DecodeJSON(t, p, &d); err != nil {
				return err
			}
			ac.draining.Store(true)
			ac.log.Info("agent is stopping: no new sessions through this connection", logging.KeyReason, d.Reason,
				"sessions", ac.sessions.Load())
		case proto.FrameTargets:
			var tg proto.Targets
			if err := proto.DecodeJSON(t, p, &tg); err != nil {
				return err
			}
			if err := tg.Validate(); err != nil {
				return err
			}
			ac.setTargets(tg.Targets)
			ac.log.Info("agent reloaded its targets", "targets", tg.Targets)
		default:
			// Frames from newer agents that this server does not know.
			ac.log.Debug("ignoring control frame", "frame", t.String())
		}
	}
}

// write sends one frame on the control stream.
func (ac *agentConn) write(t proto.FrameType, payload []byte) error {
	return ac.writeWithin(ac.srv.opt.HeartbeatTimeout, t, payload)
}

// writeWithin sends one frame on the control stream, giving up after d.
func (ac *agentConn) writeWithin(d time.Duration, t proto.FrameType, payload []byte) error {
	ac.writeMu.Lock()
	defer ac.writeMu.Unlock()
	ac.ctl.SetWriteDeadline(time.Now().Add(d))
	return proto.WriteFrame(ac.ctl, t, payload)
}

// writeJSONWithin is writeWithin for a JSON payload.
func (ac *agentConn) writeJSONWithin(d time.Duration, t proto.FrameType, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return ac.writeWithin(d, t, payload)
}

func (ac *agentConn) markRecv() {
	ac.recvMu.Lock()
	close(ac.recvCh)
	ac.recvCh = make(chan struct{})
	ac.recvMu.Unlock()
}

func (ac *agentConn) recvChan() <-chan struct{} {
	ac.recvMu.Lock()
	defer ac.recvMu.Unlock()
	return ac.recvCh
}

// alive pings the agent and reports whether anything arrives within
// timeout. A connection that does not answer is ended.
func (ac *agentConn) alive(timeout time.Duration) bool {
	recv := ac.recvChan()
	wrote := make(chan error, 1)
	go func() { wrote <- ac.write(proto.FramePing, proto.AppendSeq(nil, ac.srv.since())) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	ok := false
	select {
	case <-recv:
		ok = true
	case <-t.C:
	case <-ac.sess.Done():
	case <-ac.ended:
	}
	if !ok {
		// Ending the session also unblocks a write stuck on a dead link.
		ac.end("no answer to a liveness ping")
	}
	<-wrote
	return ok
}

// kick tells the agent why it is being disconnected; the connection ends
// once the agent hangs up, or after refuseLinger.
func (ac *agentConn) kick(code proto.RefuseCode, msg string) {
	ac.kickOnce.Do(func() {
		err := ac.writeJSONWithin(time.Second, proto.FrameRefuse, &proto.Refuse{Code: code, Message: msg})
		if err != nil {
			ac.end(msg)
			return
		}
		ac.kickReason = msg
		close(ac.kicked)
	})
}

// wasKicked reports whether the server sent the agent away (removed or
// disabled it).
func (ac *agentConn) wasKicked() bool {
	select {
	case <-ac.kicked:
		return true
	default:
		return false
	}
}

// forgetRestart stops new sessions from waiting for the agent's successor:
// it was removed or disabled.
func (s *Server) forgetRestart(name string) {
	s.mu.Lock()
	delete(s.restarting, name)
	s.mu.Unlock()
}

// end closes the connection, recording why. Only the first reason counts.
func (ac *agentConn) end(reason string) {
	ac.endOnce.Do(func() {
		ac.endReason = reason
		close(ac.ended)
		ac.sess.Close()
	})
}

// reconnect asks the agent to open a new connection, as a stopping server
// does (which has closed its listeners, so no new session comes). Agents
// that speak protocol version 1 are not asked.
func (ac *agentConn) reconnect(reason string) {
	if ac.proto < 2 {
		return
	}
	if err := ac.writeJSONWithin(time.Second, proto.FrameReconnect, &proto.Reconnect{Reason: reason}); err != nil {
		ac.log.Debug("reconnect request not sent", logging.KeyErr, err)
	}
}

// reconnectLinger is how long a stopping server waits, after asking its
// agents to reconnect, before it may close their connections.
const reconnectLinger = 200 * time.Millisecond

func (ac *agentConn) writeJSON(t proto.FrameType, v any) error {
	return ac.writeJSONWithin(ac.srv.opt.HeartbeatTimeout, t, v)
}

func (ac *agentConn) setTargets(names []string) {
	m := make(map[string]bool, len(names))
	for _, t := range names {
		m[t] = true
	}
	ac.targets.Store(&m)
}

func (ac *agentConn) declares(target string) bool { return (*ac.targets.Load())[target] }

func (ac *agentConn) targetNames() []string {
	targets := *ac.targets.Load()
	names := make([]string, 0, len(targets))
	for t := range targets {
		names = append(names, t)
	}
	sort.Strings(names)
	return names
}

// restartGrace is how long after a draining agent went away the server
// still expects its successor, and lets new sessions wait for it.
const restartGrace = time.Minute

// awaitAgent returns the agent's live connection, or nil. When the agent is
// restarting (its connection is draining, or ended while draining less than
// restartGrace ago), it waits for the successor's connection, for up to the
// open timeout or until ctx is done, and then returns what there is: a
// client's session starts late instead of failing across an agent upgrade.
func (s *Server) awaitAgent(ctx context.Context, name string) *agentConn {
	// found returns the connection to use and whether waiting is over.
	found := func() (*agentConn, bool) {
		s.mu.Lock()
		ac := s.agents[name]
		gone, restarting := s.restarting[name]
		s.mu.Unlock()
		switch {
		case ac != nil && !ac.draining.Load():
			return ac, true
		case ac == nil && (!restarting || time.Since(gone) > restartGrace):
			return nil, true
		}
		return ac, false
	}
	// Nearly always the agent is there: no timer for that.
	if ac, done := found(); done {
		return ac
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.openTimeout.Load()))
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ac, done := found()
		if done {
			return ac
		}
		select {
		case <-ctx.Done():
			return ac
		case <-s.ctx.Done():
			return ac
		case <-tick.C:
		}
	}
}
