package mux

import "time"

// Watchdog tells how long a session has received nothing. It samples
// Session.Stats, so it costs nothing between calls; call Idle periodically,
// more often than the idle time that matters. Not safe for concurrent use.
type Watchdog struct {
	sess     Session
	received uint64
	since    time.Time
}

// NewWatchdog starts watching s as of now.
func NewWatchdog(s Session, now time.Time) *Watchdog {
	return &Watchdog{sess: s, received: s.Stats().BytesReceived, since: now}
}

// Idle returns how long no byte has arrived, as far as the calls to Idle can
// tell: the time since the first call that saw the current byte count.
func (w *Watchdog) Idle(now time.Time) time.Duration {
	if n := w.sess.Stats().BytesReceived; n != w.received {
		w.received, w.since = n, now
	}
	return now.Sub(w.since)
}
