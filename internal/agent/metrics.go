package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnelrelay/tunnel/internal/metrics"
)

// Gatherer returns the agent's metrics: its own (see package metrics and
// docs/METRICS.md), the Go runtime's and the process's. Each Agent has its
// own registry.
func (a *Agent) Gatherer() prometheus.Gatherer { return a.registry }

func (a *Agent) initMetrics() {
	a.registry = metrics.NewRegistry()
	a.metrics = metrics.NewAgent(a.registry, a.opt.Version, a.targets.Load().names)
}
