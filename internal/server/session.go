package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/metrics"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/internal/splice"
	"github.com/tunnelrelay/tunnel/pkg/dbproxy"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

var _ dbproxy.Upstream = (*Server)(nil)

// Dial opens a data stream to the target of req's route through the route's
// agent and waits for the agent's answer. It implements dbproxy.Upstream.
func (s *Server) Dial(ctx context.Context, req *dbproxy.Request) (dbproxy.Backend, error) {
	// A session being set up counts for the drain as one in flight.
	s.dialing.Add(1)
	defer s.dialing.Add(-1)
	s.mu.Lock()
	rt := s.routes[req.Route]
	s.mu.Unlock()
	if rt == nil {
		s.metrics.DialFailed("", metrics.DialReason(dbproxy.ErrUnknownRoute))
		return nil, &dbproxy.RouteError{Code: dbproxy.ErrUnknownRoute, Reason: fmt.Sprintf("no route named %q", req.Route)}
	}
	failed := func(label string, code dbproxy.ErrorCode, reason string) error {
		s.metrics.DialFailed(rt.cfg.Name, label)
		return &dbproxy.RouteError{Code: code, Agent: rt.cfg.Agent, Target: rt.cfg.Target, Reason: reason}
	}
	oe := func(code dbproxy.ErrorCode, reason string) error {
		return failed(metrics.DialReason(code), code, reason)
	}
	ac := s.awaitAgent(ctx, rt.cfg.Agent)
	if ac == nil {
		return nil, oe(dbproxy.ErrAgentOffline, fmt.Sprintf("agent %q is not connected", rt.cfg.Agent))
	}
	if ac.draining.Load() {
		return nil, oe(dbproxy.ErrAgentOffline, fmt.Sprintf("agent %q is shutting down", rt.cfg.Agent))
	}
	if !ac.declares(rt.cfg.Target) {
		return nil, oe(dbproxy.ErrUnknownTarget, fmt.Sprintf("agent %q does not declare target %q", rt.cfg.Agent, rt.cfg.Target))
	}
	if max := s.maxPerAgent.Load(); ac.sessions.Add(1) > max {
		ac.sessions.Add(-1)
		return nil, oe(dbproxy.ErrLimitReached, fmt.Sprintf("agent %q is at the server's limit of %d open sessions", rt.cfg.Agent, max))
	}
	if max := rt.cfg.MaxSessions; max > 0 {
		if n := rt.sessions.Add(1); n > int64(max) {
			rt.sessions.Add(-1)
			ac.sessions.Add(-1)
			return nil, oe(dbproxy.ErrLimitReached, fmt.Sprintf("route %q is at its limit of %d open sessions", rt.cfg.Name, max))
		}
	} else {
		rt.sessions.Add(1)
	}
	release := func() {
		rt.sessions.Add(-1)
		ac.sessions.Add(-1)
	}

	id := s.nextSession.Add(1)
	st, err := s.openStream(ctx, ac, &proto.Open{
		SessionID: id,
		Target:    rt.cfg.Target,
		Client:    req.Client.String(),
		Route:     rt.cfg.Name,
	})
	if err != nil {
		release()
		code, reason := classifyOpenErr(err)
		label := metrics.DialReason(code)
		if errors.Is(err, errAgentTimeout) {
			label = metrics.ReasonTimeout
		}
		return nil, failed(label, code, reason)
	}
	rt.opened.Add(1)
	ss := &session{
		Stream:  st,
		srv:     s,
		id:      id,
		route:   rt,
		agent:   ac,
		client:  req.Client.String(),
		started: time.Now(),
		release: release,
	}
	ss.log = s.log.With(logging.KeySession, ss.idString(), logging.KeyRoute, rt.cfg.Name,
		logging.KeyAgent, ac.name, logging.KeyTarget, rt.cfg.Target, logging.KeyClient, ss.client)
	s.mu.Lock()
	s.sessions[id] = ss
	s.mu.Unlock()
	ss.log.Info("session started")
	return ss, nil
}

// replyError is the agent's refusal of a data stream.
type replyError struct{ proto.Reply }

func (e *replyError) Error() string { return e.Reply.Error() }

// classifyOpenErr says what a failed openStream means to a client.
func classifyOpenErr(err error) (dbproxy.ErrorCode, string) {
	var re *replyError
	if !errors.As(err, &re) {
		return dbproxy.ErrDialFailed, err.Error()
	}
	reason := re.Message
	if reason == "" {
		reason = re.Code.String()
	}
	switch re.Code {
	case proto.ReplyUnknownTarget:
		return dbproxy.ErrUnknownTarget, reason
	case proto.ReplyLimitReached:
		return dbproxy.ErrLimitReached, reason
	case proto.ReplyShuttingDown:
		return dbproxy.ErrAgentOffline, reason
	case proto.ReplyDialFailed:
		return dbproxy.ErrDialFailed, reason
	}
	return dbproxy.ErrInternal, reason
}

// openStream opens a data stream, sends Open and waits for the Reply.
func (s *Server) openStream(ctx context.Context, ac *agentConn, open *proto.Open) (mux.Stream, error) {
	start := time.Now()
	timeout := time.Duration(s.openTimeout.Load())
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := ac.sess.OpenStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("open stream to agent: %w", err)
	}
	// The context bounds both the write and the wait for the reply.
	stop := mux.BindDeadline(ctx, st)
	defer stop()
	if err := proto.WriteOpen(st, open); err != nil {
		st.Close()
		return nil, fmt.Errorf("send open to agent: %w", err)
	}
	reply, err := proto.ReadReply(st, s.opt.MaxHeaderSize)
	if err != nil {
		st.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("%w within %v", errAgentTimeout, timeout)
			}
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("read reply from agent: %w", err)
	}
	if reply.Code != proto.ReplyOK {
		st.Close()
		return nil, &replyError{reply}
	}
	if !stop() {
		// The context ended just as the reply came.
		st.Close()
		return nil, ctx.Err()
	}
	st.SetDeadline(time.Time{})
	s.metrics.StreamOpened(time.Since(start))
	return st, nil
}

// errAgentTimeout is an agent that did not answer a data stream's Open
// within OpenTimeout.
var errAgentTimeout = errors.New("the agent did not answer")

// session is a live client session: a data stream and its accounting.
type session struct {
	mux.Stream
	srv     *Server
	id      uint64
	route   *route
	agent   *agentConn
	client  string
	started time.Time
	log     *slog.Logger

	counters splice.Counters
	release  func()
	once     sync.Once
}

var _ dbproxy.Backend = (*session)(nil)

func (ss *session) idString() string { return strconv.FormatUint(ss.id, 16) }

// Relay splices the client and the stream, then logs the session's end.
func (ss *session) Relay(ctx context.Context, client net.Conn) {
	res := splice.Splice(ctx, client, ss.Stream, splice.Options{
		HalfCloseTimeout: ss.srv.opt.HalfCloseTimeout,
		Counters:         &ss.counters,
	})
	ss.finish(res.Err)
}

// Sibling opens another data stream to the session's target through the
// same agent connection, for a PostgreSQL cancel request. It counts against
// no session limit: it lives for one short exchange, and only a live
// session's cancel key leads here.
func (ss *session) Sibling(ctx context.Context) (net.Conn, error) {
	id := ss.srv.nextSession.Add(1)
	st, err := ss.srv.openStream(ctx, ss.agent, &proto.Open{
		SessionID: id,
		Target:    ss.route.cfg.Target,
		Client:    ss.client,
		Route:     ss.route.cfg.Name,
	})
	if err != nil {
		_, reason := classifyOpenErr(err)
		return nil, errors.New(reason)
	}
	ss.log.Info("cancel request on its way", "cancel_session", strconv.FormatUint(id, 16))
	return st, nil
}

// Close ends a session that was never relayed.
func (ss *session) Close() error {
	err := ss.Stream.Close()
	ss.finish(errors.New("closed before relaying"))
	return err
}

func (ss *session) finish(err error) {
	ss.once.Do(func() {
		ss.release()
		up, down := ss.counters.AToB.Load(), ss.counters.BToA.Load()
		// Under mu with the delete, so that countBytes and a metrics scrape
		// see these bytes either as the session's or as ended, never both.
		ss.srv.mu.Lock()
		ss.route.bytesUp.Add(up)
		ss.route.bytesDown.Add(down)
		ss.srv.endedBytes.up += up
		ss.srv.endedBytes.down += down
		delete(ss.srv.sessions, ss.id)
		ss.srv.mu.Unlock()
		attrs := []any{logging.KeyBytesUp, up, logging.KeyBytesDown, down,
			logging.KeyDuration, time.Since(ss.started).Round(time.Millisecond)}
		if err != nil {
			attrs = append(attrs, logging.KeyErr, err.Error())
		}
		ss.log.Info("session ended", attrs...)
	})
}
