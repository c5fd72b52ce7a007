package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/pkg/dbproxy"
)

const serverNamespace = "tunnel_server"

// Results of an agent handshake (the result label), besides the code of a
// refusal (proto.RefuseCode), which is the result of a refused handshake.
const (
	// HandshakeOK: the agent was welcomed and is connected.
	HandshakeOK = "ok"
	// HandshakeProbe: `tunnel-agent check` proved its credential.
	HandshakeProbe = "probe"
	// HandshakeEnrolled: `tunnel-agent enroll` registered a key with a
	// one-time token.
	HandshakeEnrolled = "enrolled"
	// HandshakeFailed: the handshake broke off (no control stream or
	// hello in time, no identity, the connection dropped) before the
	// agent could be told anything.
	HandshakeFailed = "failed"
)

// refuseCodes are the refusals known when this was written; a newer code is
// counted too, from its first use.
var refuseCodes = []proto.RefuseCode{
	proto.RefuseUnknownAgent, proto.RefuseAgentDisabled, proto.RefuseKeyMismatch,
	proto.RefuseAlreadyConnected, proto.RefuseUnsupportedVersion, proto.RefuseBadHello,
	proto.RefuseShuttingDown, proto.RefuseInternal, proto.RefuseBadToken,
}

// ReasonTimeout is the reason label, on the server, of a data stream the
// agent did not answer within the server's open timeout; on the agent, of a
// target that did not connect (or finish its setup) within dial_timeout.
const ReasonTimeout = "timeout"

// DialReason is the reason label of a failure a client was told about as
// code.
func DialReason(code dbproxy.ErrorCode) string {
	switch code {
	case dbproxy.ErrUnknownRoute:
		return "unknown_route"
	case dbproxy.ErrAgentOffline:
		return "agent_offline"
	case dbproxy.ErrUnknownTarget:
		return "unknown_target"
	case dbproxy.ErrDialFailed:
		return "dial_failed"
	case dbproxy.ErrLimitReached:
		return "limit_reached"
	case dbproxy.ErrForbidden:
		return "forbidden"
	}
	return "internal"
}

// ServerStats is what the server's collector reads from the engine at
// scrape time.
type ServerStats struct {
	// AgentsConnected counts the agents with a live connection.
	AgentsConnected int
	// Routes are the routes served, each once.
	Routes []RouteStats
}

// RouteStats are one route's counters.
type RouteStats struct {
	Name string
	// Active counts the sessions relaying now.
	Active int
	// Sessions counts the sessions started since the route was added
	// (or the server started).
	Sessions uint64
	// BytesUp and BytesDown count the bytes relayed from clients to the
	// database and back, live sessions included.
	BytesUp, BytesDown int64
}

// Server holds the metrics tunnel-server counts as events happen. Create
// it with NewServer; its methods are safe for concurrent use.
type Server struct {
	handshakes   *prometheus.CounterVec
	reconnects   prometheus.Counter
	dialFailures *prometheus.CounterVec
	streamOpen   prometheus.Histogram
	heartbeatRTT prometheus.Histogram

	mu   sync.Mutex
	seen map[string]struct{} // agents welcomed since the server started
}

// NewServer registers the server's metrics with reg. stats is called at
// every scrape, and must be quick and safe for concurrent use.
func NewServer(reg prometheus.Registerer, version string, stats func() ServerStats) *Server {
	m := &Server{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: serverNamespace,
			Name:      "agent_handshakes_total",
			Help:      "Agent handshakes by result: ok, probe, failed, or the code the agent was refused with.",
		}, []string{"result"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: serverNamespace,
			Name:      "agent_reconnects_total",
			Help:      "Connections of agents that had been connected to this server process before, replacing an earlier connection or not.",
		}),
		dialFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: serverNamespace,
			Name:      "dial_failures_total",
			Help:      "Client sessions that could not reach their database, by route and reason.",
		}, []string{"route", "reason"}),
		streamOpen: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: serverNamespace,
			Name:      "stream_open_duration_seconds",
			Help:      "Time from opening a data stream to the agent's ok, which includes the agent's dial of the database.",
			Buckets:   openBuckets,
		}),
		heartbeatRTT: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: serverNamespace,
			Name:      "heartbeat_rtt_seconds",
			Help:      "Round trip of the server's heartbeat pings to agents.",
			Buckets:   rttBuckets,
		}),
		seen: map[string]struct{}{},
	}
	for _, r := range []string{HandshakeOK, HandshakeProbe, HandshakeEnrolled, HandshakeFailed} {
		m.handshakes.WithLabelValues(r)
	}
	for _, c := range refuseCodes {
		m.handshakes.WithLabelValues(string(c))
	}
	reg.MustRegister(m.handshakes, m.reconnects, m.dialFailures, m.streamOpen, m.heartbeatRTT,
		buildInfo(serverNamespace, version), newServerCollector(stats))
	return m
}

// Handshake counts an agent handshake that ended with result: HandshakeProbe,
// HandshakeEnrolled, HandshakeFailed or a refusal's code. A welcome is AgentConnected.
func (m *Server) Handshake(result string) { m.handshakes.WithLabelValues(result).Inc() }

// AgentConnected counts a welcomed agent connection: a handshake that
// succeeded, and a reconnect when the agent was connected before.
func (m *Server) AgentConnected(agent string) {
	m.handshakes.WithLabelValues(HandshakeOK).Inc()
	m.mu.Lock()
	_, again := m.seen[agent]
	m.seen[agent] = struct{}{}
	m.mu.Unlock()
	if again {
		m.reconnects.Inc()
	}
}

// DialFailed counts a client session refused for reason (DialReason or
// ReasonTimeout); route is empty when the route is unknown, so that clients
// cannot make up label values.
func (m *Server) DialFailed(route, reason string) {
	m.dialFailures.WithLabelValues(route, reason).Inc()
}

// StreamOpened records how long a data stream took to be accepted.
func (m *Server) StreamOpened(d time.Duration) { m.streamOpen.Observe(d.Seconds()) }

// HeartbeatRTT records a heartbeat round trip.
func (m *Server) HeartbeatRTT(d time.Duration) { m.heartbeatRTT.Observe(d.Seconds()) }

// serverCollector reads the engine's own counters at scrape time.
type serverCollector struct {
	stats                          func() ServerStats
	agents, active, sessions, byts *prometheus.Desc
}

func newServerCollector(stats func() ServerStats) *serverCollector {
	name := func(n string) string { return prometheus.BuildFQName(serverNamespace, "", n) }
	return &serverCollector{
		stats: stats,
		agents: prometheus.NewDesc(name("agents_connected"),
			"Agents with a live connection to this server.", nil, nil),
		active: prometheus.NewDesc(name("sessions_active"),
			"Client sessions relaying bytes now, by route.", []string{"route"}, nil),
		sessions: prometheus.NewDesc(name("sessions_total"),
			"Client sessions started, by route (since the route was added or the server started).", []string{"route"}, nil),
		byts: prometheus.NewDesc(name("bytes_total"),
			`Bytes relayed by route and direction: "up" from clients to the database, "down" back.`,
			[]string{"route", "direction"}, nil),
	}
}

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.agents
	ch <- c.active
	ch <- c.sessions
	ch <- c.byts
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	ch <- prometheus.MustNewConstMetric(c.agents, prometheus.GaugeValue, float64(st.AgentsConnected))
	for _, r := range st.Routes {
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(r.Active), r.Name)
		ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.CounterValue, float64(r.Sessions), r.Name)
		ch <- prometheus.MustNewConstMetric(c.byts, prometheus.CounterValue, float64(r.BytesUp), r.Name, DirectionUp)
		ch <- prometheus.MustNewConstMetric(c.byts, prometheus.CounterValue, float64(r.BytesDown), r.Name, DirectionDown)
	}
}
