package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnelrelay/tunnel/internal/metrics"
)

// Gatherer returns the server's metrics: its own (see package metrics and
// docs/METRICS.md), the Go runtime's and the process's. Each Server has
// its own registry.
func (s *Server) Gatherer() prometheus.Gatherer { return s.registry }

func (s *Server) initMetrics() {
	s.registry = metrics.NewRegistry()
	s.metrics = metrics.NewServer(s.registry, s.opt.Version, s.metricsStats)
}

// metricsStats reads the counters the server keeps anyway, at scrape time:
// nothing is added to the per-byte path. The bytes are countBytes', as the
// throughput history and the admin API see them.
func (s *Server) metricsStats() metrics.ServerStats {
	_, bytes := s.countBytes()
	s.mu.Lock()
	defer s.mu.Unlock()
	active := make(map[*route]int, len(s.routes))
	for _, ss := range s.sessions {
		active[ss.route]++
	}
	st := metrics.ServerStats{AgentsConnected: len(s.agents), Routes: make([]metrics.RouteStats, 0, len(s.routes))}
	for name, r := range s.routes {
		b := bytes[name]
		st.Routes = append(st.Routes, metrics.RouteStats{
			Name:      name,
			Active:    active[r],
			Sessions:  r.opened.Load(),
			BytesUp:   b.up,
			BytesDown: b.down,
		})
	}
	return st
}
