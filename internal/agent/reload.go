package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tunnelrelay/tunnel/internal/logging"
)

// targetSet is the agent's declared targets; it is replaced whole by
// SetTargets, never changed in place.
type targetSet struct {
	byName map[string]*dialer
	names  []string // in config order, as told to the server
}

func newTargetSet(targets []Target) (*targetSet, error) {
	ts := &targetSet{byName: make(map[string]*dialer, len(targets)), names: []string{}}
	for _, t := range targets {
		if _, dup := ts.byName[t.Name]; dup {
			return nil, fmt.Errorf("target %q declared twice", t.Name)
		}
		d, err := newDialer(t)
		if err != nil {
			return nil, err
		}
		ts.byName[t.Name] = d
		ts.names = append(ts.names, t.Name)
	}
	return ts, nil
}

// TargetChange says what SetTargets changed, by target name.
type TargetChange struct {
	Added, Removed, Changed []string
}

// SetTargets replaces the declared targets, as on a config reload. New
// sessions see the new set at once, and the server is told the new names;
// sessions in flight, to a removed or changed target too, continue on their
// existing connection to the database. The connection to the server stays
// up. On an error nothing changes.
func (a *Agent) SetTargets(targets []Target) (TargetChange, error) {
	next, err := newTargetSet(targets)
	if err != nil {
		return TargetChange{}, fmt.Errorf("agent: %w", err)
	}
	prev := a.targets.Swap(next)
	var ch TargetChange
	for _, name := range next.names {
		old, ok := prev.byName[name]
		switch {
		case !ok:
			ch.Added = append(ch.Added, name)
		case old.target != next.byName[name].target:
			ch.Changed = append(ch.Changed, name)
		}
	}
	for _, name := range prev.names {
		if _, ok := next.byName[name]; !ok {
			ch.Removed = append(ch.Removed, name)
		}
	}
	if !slices.Equal(prev.names, next.names) {
		select {
		case a.targetsChanged <- struct{}{}:
		default: // already pending; the frame carries the latest set
		}
	}
	return ch, nil
}

// SetTLSConfig replaces the credential the agent connects with, as after a
// key rotation, and moves to a new connection that uses it. Sessions on the
// old connection finish there.
func (a *Agent) SetTLSConfig(c *tls.Config) {
	a.tlsConf.Store(c)
	a.requestMove("the agent's key changed")
}

// requestMove asks the serving connection to move to a new one, which
// takes the old one's place on the server while the old one finishes its
// sessions. It does not wait.
func (a *Agent) requestMove(reason string) {
	select {
	case a.moveReq <- reason:
	default: // a move is already pending
	}
}

// Drain stops the agent gracefully: it tells the server to open no more
// sessions through it, refuses any that still arrive, and waits until the
// sessions in flight have ended or ctx is done. It returns the number of
// sessions still open then. Run keeps serving heartbeats meanwhile; cancel
// its context after Drain returns.
func (a *Agent) Drain(ctx context.Context) int {
	a.drainOnce.Do(func() { close(a.drain) })
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		n := int(a.active.Load())
		if n == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return n
		case <-tick.C:
		}
	}
}

func (a *Agent) draining() bool {
	select {
	case <-a.drain:
		return true
	default:
		return false
	}
}

// errServerRestarting ends a connection the server asked the agent to
// leave (it was stopping) before a new one could be made: the agent then
// retries quickly, since the server, or its successor, is expected back
// soon.
var errServerRestarting = errors.New("the server is restarting")

// restartBackoff caps the reconnect delays for restartWindow after the
// server said it was restarting.
const (
	restartBackoff = time.Second
	restartWindow  = 2 * time.Minute
)

// moveRetry is how long a failed move waits before the next attempt.
func moveRetry() time.Duration { return 500*time.Millisecond + rand.N(time.Second) }

// tryMove connects a new connection for a move; nil when it failed (it
// logs why).
func (c *conn) tryMove(ctx context.Context, reason string) *conn {
	next, err := c.a.connect(ctx, false)
	if err != nil {
		if ctx.Err() == nil {
			c.a.log.Info("no new connection yet; the current one keeps serving", logging.KeyReason, reason, logging.KeyErr, err.Error())
		}
		return nil
	}
	c.a.log.Info("moved to a new connection; the old one finishes its sessions", logging.KeyReason, reason)
	return next
}

// TLSConfig returns the credential the agent connects with now.
func (a *Agent) TLSConfig() *tls.Config { return a.tlsConf.Load() }
