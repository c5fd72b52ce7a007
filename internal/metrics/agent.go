package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnelrelay/tunnel/internal/splice"
)

const agentNamespace = "tunnel_agent"

// Reasons of a session the agent refused (the reason label of
// tunnel_agent_dial_failures_total), besides ReasonTimeout.
const (
	// ReasonBadRequest: the data stream's header could not be read.
	ReasonBadRequest = "bad_request"
	// ReasonUnknownTarget: the server asked for a target the agent does not
	// declare (the target label is then empty: the name came from the
	// server, and only declared names become label values).
	ReasonUnknownTarget = "unknown_target"
	// ReasonLimitReached: the agent's max_sessions were open.
	ReasonLimitReached = "limit_reached"
	// ReasonRefused: the database refused the TCP connection.
	ReasonRefused = "refused"
	// ReasonUnresolved: the target's host name does not resolve.
	ReasonUnresolved = "unresolved"
	// ReasonUnreachable: no route to the target's host.
	ReasonUnreachable = "unreachable"
	// ReasonSetupFailed: connected, but the PROXY header, PostgreSQL's SSL
	// negotiation or the TLS handshake failed.
	ReasonSetupFailed = "setup_failed"
	// ReasonDialFailed: any other failure to connect.
	ReasonDialFailed = "dial_failed"
)

// Transports, the values of the transport label.
var transports = []string{"tls", "quic"}

// Agent holds tunnel-agent's metrics. Create it with NewAgent; its methods
// are safe for concurrent use.
type Agent struct {
	connected    *prometheus.GaugeVec
	reconnects   prometheus.Counter
	dialFailures *prometheus.CounterVec
	dialDuration *prometheus.HistogramVec
	heartbeatRTT prometheus.Histogram

	mu       sync.Mutex
	welcomed bool                    // a connection was welcomed before
	targets  map[string]*targetStats // by target name
}

// targetStats are the session counters of one target. Guarded by Agent.mu.
type targetStats struct {
	sessions uint64
	up, down int64 // bytes of ended sessions
	live     map[*Session]struct{}
}

// NewAgent registers the agent's metrics with reg. targets are the declared
// targets, shown at zero until they serve a session.
func NewAgent(reg prometheus.Registerer, version string, targets []string) *Agent {
	m := &Agent{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: agentNamespace,
			Name:      "connected",
			Help:      "1 for the transport of the agent's live connection to the server, 0 for the other, 0 for both while it is not connected.",
		}, []string{"transport"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: agentNamespace,
			Name:      "reconnects_total",
			Help:      "Connections to the server welcomed after the first one: reconnects after a loss, and moves to another connection.",
		}),
		dialFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: agentNamespace,
			Name:      "dial_failures_total",
			Help:      "Sessions the agent could not connect to their target, by target and reason.",
		}, []string{"target", "reason"}),
		dialDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: agentNamespace,
			Name:      "dial_duration_seconds",
			Help:      "Time to connect to a target (TCP, and PROXY header and TLS when configured), successful dials only.",
			Buckets:   openBuckets,
		}, []string{"target"}),
		heartbeatRTT: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: agentNamespace,
			Name:      "heartbeat_rtt_seconds",
			Help:      "Round trip of the agent's heartbeat pings to the server.",
			Buckets:   rttBuckets,
		}),
		targets: map[string]*targetStats{},
	}
	for _, t := range transports {
		m.connected.WithLabelValues(t)
	}
	for _, t := range targets {
		m.target(t)
	}
	reg.MustRegister(m.connected, m.reconnects, m.dialFailures, m.dialDuration, m.heartbeatRTT,
		buildInfo(agentNamespace, version), &agentCollector{m: m, descs: newAgentDescs()})
	return m
}

// target returns name's counters, created on first use. The caller holds
// m.mu, or owns m alone.
func (m *Agent) target(name string) *targetStats {
	t := m.targets[name]
	if t == nil {
		t = &targetStats{live: map[*Session]struct{}{}}
		m.targets[name] = t
	}
	return t
}

// Connected notes a welcomed connection over transport ("tls" or "quic"),
// counting a reconnect if it is not the first.
func (m *Agent) Connected(transport string) {
	m.mu.Lock()
	again := m.welcomed
	m.welcomed = true
	m.mu.Unlock()
	if again {
		m.reconnects.Inc()
	}
	for _, t := range transports {
		v := 0.0
		if t == transport {
			v = 1
		}
		m.connected.WithLabelValues(t).Set(v)
	}
}

// Disconnected notes that the agent has no live connection.
func (m *Agent) Disconnected() {
	for _, t := range transports {
		m.connected.WithLabelValues(t).Set(0)
	}
}

// DialFailed counts a session refused for reason. target must be a
// declared target's name, or empty.
func (m *Agent) DialFailed(target, reason string) {
	m.dialFailures.WithLabelValues(target, reason).Inc()
}

// Dialed records a successful dial of a declared target.
func (m *Agent) Dialed(target string, d time.Duration) {
	m.dialDuration.WithLabelValues(target).Observe(d.Seconds())
}

// HeartbeatRTT records a heartbeat round trip.
func (m *Agent) HeartbeatRTT(d time.Duration) { m.heartbeatRTT.Observe(d.Seconds()) }

// Session is one session's byte counters: pass Counters to splice, and call
// End once it is done. A scrape reads them while the session runs.
type Session struct {
	Counters splice.Counters
	m        *Agent
	t        *targetStats
	once     sync.Once
}

// SessionStarted counts a session to a declared target and returns its
// counters.
func (m *Agent) SessionStarted(target string) *Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.target(target)
	s := &Session{m: m, t: t}
	t.sessions++
	t.live[s] = struct{}{}
	return s
}

// End moves the session's bytes to its target's totals.
func (s *Session) End() {
	s.once.Do(func() {
		s.m.mu.Lock()
		defer s.m.mu.Unlock()
		// Under the lock with the removal, so that no scrape counts the
		// bytes twice, or misses them.
		s.t.up += s.Counters.AToB.Load()
		s.t.down += s.Counters.BToA.Load()
		delete(s.t.live, s)
	})
}

type agentDescs struct{ active, sessions, byts *prometheus.Desc }

func newAgentDescs() agentDescs {
	name := func(n string) string { return prometheus.BuildFQName(agentNamespace, "", n) }
	return agentDescs{
		active: prometheus.NewDesc(name("sessions_active"),
			"Sessions relaying bytes now, by target.", []string{"target"}, nil),
		sessions: prometheus.NewDesc(name("sessions_total"),
			"Sessions started (the target dialed), by target.", []string{"target"}, nil),
		byts: prometheus.NewDesc(name("bytes_total"),
			`Bytes relayed by target and direction: "up" from the server (clients) to the target, "down" back.`,
			[]string{"target", "direction"}, nil),
	}
}

// agentCollector reads the session counters at scrape time.
type agentCollector struct {
	m     *Agent
	descs agentDescs
}

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.descs.active
	ch <- c.descs.sessions
	ch <- c.descs.byts
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	type row struct {
		name             string
		active, sessions uint64
		up, down         int64
	}
	c.m.mu.Lock()
	rows := make([]row, 0, len(c.m.targets))
	for name, t := range c.m.targets {
		r := row{name: name, active: uint64(len(t.live)), sessions: t.sessions, up: t.up, down: t.down}
		for s := range t.live {
			r.up += s.Counters.AToB.Load()
			r.down += s.Counters.BToA.Load()
		}
		rows = append(rows, r)
	}
	c.m.mu.Unlock()
	d := c.descs
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(d.active, prometheus.GaugeValue, float64(r.active), r.name)
		ch <- prometheus.MustNewConstMetric(d.sessions, prometheus.CounterValue, float64(r.sessions), r.name)
		ch <- prometheus.MustNewConstMetric(d.byts, prometheus.CounterValue, float64(r.up), r.name, DirectionUp)
		ch <- prometheus.MustNewConstMetric(d.byts, prometheus.CounterValue, float64(r.down), r.name, DirectionDown)
	}
}
