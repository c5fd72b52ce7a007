package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/metrics"
)

// serveMetrics opens the metrics endpoint when [agent] metrics_listen asks
// for one. stop closes it and waits for it.
func serveMetrics(ctx context.Context, cfg *config.Agent, eng *agent.Agent, log *slog.Logger) (stop func(), err error) {
	addr := cfg.Agent.MetricsListen
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("agent.metrics_listen: %w", err)
	}
	log = logging.Module(log, "metrics")
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := metrics.Serve(ctx, ln, eng.Gatherer(), log); err != nil {
			log.Error("metrics endpoint stopped", logging.KeyErr, err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+ln.Addr().String()+metrics.Path)
	return func() { cancel(); <-done }, nil
}
