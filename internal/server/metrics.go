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
// nothing is added to the per-byte path. Bytes of live sessions are added
// to their route's totals of ended ones; finish moves a session's bytes
// under the same lock, so none is counted twice or missed.
func (s *Server) metricsStats() metrics.ServerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := metrics.ServerStats{AgentsConnected: len(s.agents), Routes: make([]metrics.RouteStats, 0, len(s.routes))}
	index := make(map[*route]int, len(s.routes))
	for name, r := range s.routes {
		index[r] = len(st.Routes)
		st.Routes = append(st.Routes, metrics.RouteStats{
			Name:      name,
			Sessions:  r.opened.Load(),
			BytesUp:   r.bytesUp.Load(),
			BytesDown: r.bytesDown.Load(),
		})
	}
	for _, ss := range s.sessions {
		i, ok := index[ss.route]
		if !ok {
			continue // its route was removed: no series left to add to
		}
		rs := &st.Routes[i]
		rs.Active++
		rs.BytesUp += ss.counters.AToB.Load()
		rs.BytesDown += ss.counters.BToA.Load()
	}
	return st
}
