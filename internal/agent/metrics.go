package agent

import (
	"context"
	"errors"
	"net"
	"syscall"

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

// dialFailReason is the metrics reason of a failed dial, in the same
// classes as describeDialErr.
func dialFailReason(err error) string {
	var (
		setupErr *setupError
		dnsErr   *net.DNSError
		ne       net.Error
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return metrics.ReasonTimeout
	case errors.As(err, &setupErr):
		return metrics.ReasonSetupFailed
	case errors.Is(err, syscall.ECONNREFUSED):
		return metrics.ReasonRefused
	case errors.As(err, &dnsErr):
		return metrics.ReasonUnresolved
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return metrics.ReasonUnreachable
	}
	return metrics.ReasonDialFailed
}
