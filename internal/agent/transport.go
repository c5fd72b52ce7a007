package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tunnelrelay/tunnel/internal/proto"
)

// Transports, as in Options.Transport.
const (
	TransportAuto = "auto"
	TransportTLS  = "tls"
	TransportQUIC = "quic"
)

// fallback is where transport "auto" stands: when QUIC last failed, and how.
type fallback struct {
	at     time.Time // zero while QUIC works or has not been tried
	reason string
}

// connect dials the server the way Options.Transport says and runs the hello
// exchange. With "auto" it tries QUIC first, unless QUIC failed less than
// QUICRetry ago, and falls back to TLS when QUIC fails or does not answer
// within QUICTimeout; the TLS hello tells the server why. Behind an HTTP
// proxy, "auto" means TLS.
func (a *Agent) connect(ctx context.Context, probe bool) (*conn, error) {
	if a.proxied() && a.opt.Transport == TransportAuto {
		return a.connectOver(ctx, TransportTLS, probe, proxyFallback)
	}
	if a.opt.Transport != TransportAuto {
		return a.connectOver(ctx, a.opt.Transport, probe, "")
	}
	reason, due := a.quicDue(time.Now())
	if !due {
		return a.connectOver(ctx, TransportTLS, probe, reason)
	}
	c, qerr := a.tryQUIC(ctx, probe)
	if qerr == nil {
		return c, nil
	}
	var ref *proto.Refuse
	if errors.As(qerr, &ref) || ctx.Err() != nil {
		// A refusal would be the same over TLS.
		return nil, qerr
	}
	reason = fallbackReason(qerr)
	c, err := a.connectOver(ctx, TransportTLS, probe, reason)
	if err != nil {
		// Neither works: the server is down or unreachable, not UDP
		// blocked. QUIC is tried first again next time.
		return nil, err
	}
	a.quicFailed(qerr, reason)
	return c, nil
}

// fallbackReason says why QUIC failed, within proto.MaxFallbackLen bytes
// and whole characters.
func fallbackReason(err error) string {
	return proto.ClipFallback("QUIC failed: " + err.Error())
}

// tryQUIC connects over QUIC within QUICTimeout, and notes a success.
func (a *Agent) tryQUIC(ctx context.Context, probe bool) (*conn, error) {
	qctx, cancel := context.WithTimeout(ctx, a.opt.QUICTimeout)
	defer cancel()
	c, err := a.connectOver(qctx, TransportQUIC, probe, "")
	if err != nil {
		if qctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no QUIC handshake within %v (is UDP blocked on the way?): %w", a.opt.QUICTimeout, err)
		}
		return nil, err
	}
	a.fallbackMu.Lock()
	a.fallback = fallback{}
	a.fallbackMu.Unlock()
	return c, nil
}

// quicDue reports whether QUIC should be tried now, and otherwise why the
// agent is on TLS.
func (a *Agent) quicDue(now time.Time) (reason string, due bool) {
	a.fallbackMu.Lock()
	defer a.fallbackMu.Unlock()
	f := a.fallback
	if f.at.IsZero() || now.Sub(f.at) >= a.opt.QUICRetry {
		return "", true
	}
	return f.reason, false
}

// quicRetryAt is when QUIC is due again; zero when it is due now.
func (a *Agent) quicRetryAt() time.Time {
	a.fallbackMu.Lock()
	defer a.fallbackMu.Unlock()
	if a.fallback.at.IsZero() {
		return time.Time{}
	}
	return a.fallback.at.Add(a.opt.QUICRetry)
}

// quicFailed records a failed QUIC attempt, with the reason told to the
// server, and logs it.
func (a *Agent) quicFailed(err error, reason string) {
	a.fallbackMu.Lock()
	first := a.fallback.at.IsZero()
	a.fallback = fallback{at: time.Now(), reason: reason}
	a.fallbackMu.Unlock()
	level := "QUIC failed; falling back to TLS"
	if !first {
		level = "QUIC still failing; staying on TLS"
	}
	a.log.Warn(level, "server", a.opt.ServerAddress, "reason", err.Error(), "quic_retry_in", a.opt.QUICRetry)
}

// switchToQUIC is called, with transport auto, on a TLS connection that
// carries no sessions once QUIC is due again. It connects over QUIC; on
// success the server replaces the TLS connection with the new one, and the
// caller moves to it.
func (c *conn) switchToQUIC(ctx context.Context) *conn {
	a := c.a
	next, err := a.tryQUIC(ctx, false)
	if err != nil {
		var ref *proto.Refuse
		if !errors.As(err, &ref) && ctx.Err() == nil {
			// The TLS connection works, so it is QUIC that does not.
			a.quicFailed(err, fallbackReason(err))
		}
		return nil
	}
	a.log.Info("QUIC works again; moving the connection from TLS to QUIC", "server", a.opt.ServerAddress)
	return next
}
