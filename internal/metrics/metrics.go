// Package metrics defines the Prometheus metrics of tunnel-server and
// tunnel-agent (every name, label and bucket is here, documented in
// docs/METRICS.md) and serves them over HTTP.
//
// Each engine gets its own registry from NewRegistry: nothing is registered
// with the client library's global default registry, and no metric lives in
// a package variable, so several servers and agents can run in one process.
// Counters that the engines already keep (bytes, sessions) are read at
// scrape time by a custom collector instead of being counted twice on the
// per-byte path; events (handshakes, dial failures, latencies) are counted
// where they happen.
//
// It is not the admin API (package admin), which decides who may scrape the
// server's metrics.
package metrics

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where the metrics are served.
const Path = "/metrics"

// Values of the direction label of the byte counters.
const (
	// DirectionUp is client to database.
	DirectionUp = "up"
	// DirectionDown is database to client.
	DirectionDown = "down"
)

// NewRegistry returns a registry holding the Go runtime and process
// collectors, for one engine's metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handler serves the metrics g gathers in the Prometheus text format. A
// collector that fails is logged and left out; the rest is still served.
func Handler(g prometheus.Gatherer, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		// A scrape reads every live session's counters: a few at a time
		// is plenty for any number of Prometheus servers.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// Serve serves GET /metrics from g on ln, to anyone who can reach ln (no
// authentication: bind it to loopback or a private interface), until ctx is
// done; then it closes ln and returns nil once requests in flight are done,
// or after a few seconds. Any other path gets 404.
func Serve(ctx context.Context, ln net.Listener, g prometheus.Gatherer, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, Handler(g, log))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	stopped := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(stopped)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	})
	err := srv.Serve(ln)
	if stop() {
		// Serve failed on its own: nothing will shut it down.
		return err
	}
	<-stopped
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Histogram buckets, in seconds.
var (
	// openBuckets cover opening a data stream: a round trip to the agent
	// plus its dial of the database, from loopback to a slow WAN and a
	// database that takes seconds to accept.
	openBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// rttBuckets cover a heartbeat round trip: loopback to intercontinental,
	// and a link stalled for seconds.
	rttBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
)

// buildInfo is the conventional constant 1 carrying the version; an empty
// version is "unknown".
func buildInfo(ns, version string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   ns,
		Name:        "build_info",
		Help:        "Always 1; the version label is the running release.",
		ConstLabels: prometheus.Labels{"version": cmp.Or(version, "unknown")},
	})
	g.Set(1)
	return g
}
