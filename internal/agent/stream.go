package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/metrics"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/internal/splice"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// serveStream handles one data stream: header, checks, dial, reply, splice.
func (a *Agent) serveStream(ctx context.Context, st mux.Stream) {
	// Counted from the start, so that Drain waits for a stream the server
	// opened just before it learned that the agent is stopping.
	n := a.active.Add(1)
	defer a.active.Add(-1)
	st.SetReadDeadline(time.Now().Add(a.opt.HandshakeTimeout))
	open, err := proto.ReadOpen(st, a.opt.MaxHeaderSize)
	if err != nil {
		a.log.Warn("bad data stream header", logging.KeyErr, err)
		a.metrics.DialFailed("", metrics.ReasonBadRequest)
		a.reply(st, proto.ReplyBadRequest, "bad header: "+err.Error())
		st.Close()
		return
	}
	log := a.log.With(logging.KeySession, strconv.FormatUint(open.SessionID, 16), logging.KeyRoute, open.Route,
		logging.KeyTarget, open.Target, logging.KeyClient, open.Client)

	if a.draining() {
		msg := fmt.Sprintf("agent %q is shutting down", a.opt.Name)
		log.Info("session refused", logging.KeyReason, msg)
		a.reply(st, proto.ReplyShuttingDown, msg)
		st.Close()
		return
	}
	d, ok := a.targets.Load().byName[open.Target]
	if !ok {
		msg := fmt.Sprintf("agent %q declares no target %q", a.opt.Name, open.Target)
		log.Warn("session refused", logging.KeyReason, msg)
		a.metrics.DialFailed("", metrics.ReasonUnknownTarget)
		a.reply(st, proto.ReplyUnknownTarget, msg)
		st.Close()
		return
	}
	if n > int64(a.opt.MaxSessions) {
		msg := fmt.Sprintf("agent %q is at its limit of %d open sessions", a.opt.Name, a.opt.MaxSessions)
		log.Warn("session refused", logging.KeyReason, msg)
		a.metrics.DialFailed(open.Target, metrics.ReasonLimitReached)
		a.reply(st, proto.ReplyLimitReached, msg)
		st.Close()
		return
	}

	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, a.opt.DialTimeout)
	target, err := d.dial(dctx, open.Client)
	cancel()
	if err != nil {
		reason, msg := classifyDialErr(open.Target, err, a.opt.DialTimeout)
		log.Warn("session refused", logging.KeyReason, msg, logging.KeyErr, err)
		a.metrics.DialFailed(open.Target, reason)
		a.reply(st, proto.ReplyDialFailed, msg)
		st.Close()
		return
	}
	a.metrics.Dialed(open.Target, time.Since(start))
	st.SetReadDeadline(time.Time{})
	if err := a.reply(st, proto.ReplyOK, ""); err != nil {
		log.Info("session abandoned by the server", logging.KeyErr, err)
		target.Close()
		st.Close()
		return
	}
	log.Debug("session started", "dial", time.Since(start).Round(time.Microsecond))
	ms := a.metrics.SessionStarted(open.Target)
	defer ms.End()
	res := splice.Splice(ctx, st, target, splice.Options{HalfCloseTimeout: a.opt.HalfCloseTimeout, Counters: &ms.Counters})
	attrs := []any{logging.KeyBytesUp, res.AToB, logging.KeyBytesDown, res.BToA,
		logging.KeyDuration, time.Since(start).Round(time.Millisecond)}
	if res.Err != nil {
		attrs = append(attrs, logging.KeyErr, res.Err.Error())
	}
	log.Info("session ended", attrs...)
}

func (a *Agent) reply(st mux.Stream, code proto.ReplyCode, msg string) error {
	st.SetWriteDeadline(time.Now().Add(a.opt.HandshakeTimeout))
	err := proto.WriteReply(st, &proto.Reply{Code: code, Message: msg})
	st.SetWriteDeadline(time.Time{})
	return err
}

// describeDialErr explains a failed dial without the target's address: the
// reason travels to the server and may be shown to its clients, while the
// address is the customer's business (it is in the agent's own log).
func describeDialErr(target string, err error, timeout time.Duration) string {
	_, msg := classifyDialErr(target, err, timeout)
	return msg
}

// classifyDialErr returns a failed dial's metrics reason and its
// description (see describeDialErr), from one look at the error.
func classifyDialErr(target string, err error, timeout time.Duration) (reason, msg string) {
	var (
		setupErr *setupError
		dnsErr   *net.DNSError
		sysErr   *os.SyscallError
		ne       net.Error
	)
	timedOut := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
	switch {
	case errors.As(err, &setupErr) && timedOut:
		return metrics.ReasonTimeout, fmt.Sprintf("target %q did not complete %s within %v", target, setupErr.step, timeout)
	case errors.As(err, &setupErr):
		return metrics.ReasonSetupFailed, fmt.Sprintf("target %q %s", target, setupErr.reason)
	case errors.Is(err, syscall.ECONNREFUSED):
		return metrics.ReasonRefused, fmt.Sprintf("target %q refused the connection", target)
	case timedOut:
		return metrics.ReasonTimeout, fmt.Sprintf("target %q did not answer within %v", target, timeout)
	case errors.As(err, &dnsErr):
		return metrics.ReasonUnresolved, fmt.Sprintf("target %q: its host name does not resolve", target)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return metrics.ReasonUnreachable, fmt.Sprintf("target %q: no route to its host", target)
	case errors.As(err, &sysErr):
		return metrics.ReasonDialFailed, fmt.Sprintf("target %q: %v", target, sysErr.Err)
	}
	return metrics.ReasonDialFailed, fmt.Sprintf("cannot connect to target %q", target)
}
