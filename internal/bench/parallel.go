package bench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// The parallel scenario runs ParallelStreams bulk transfers at once over
// one path (through the tunnel: streams of one agent's one connection;
// through the relay: as many TLS connections) and reports the aggregate:
// all the bytes over the time from the moment every stream is connected and
// ready to the moment the last one finishes. The streams share
// Config.BulkSize between them.

// parallelBudget is DESIGN.md's: 16 parallel bulk streams through one agent,
// aggregate, at least 0.95 × the reference relay with 16 sessions.
const parallelBudget = 0.95

func runParallel(ctx context.Context, env *Env) []Row {
	cfg := env.Config
	rows := make([]Row, len(bulkDirections))
	for i, op := range bulkDirections {
		rows[i] = Row{Figure: fmt.Sprintf("%d parallel bulk streams, %s, aggregate", ParallelStreams, dirName(op)), Unit: "MB/s"}
	}
	fail := func(err error) []Row {
		for i := range rows {
			rows[i].Err = err.Error()
		}
		return rows
	}
	target, err := startBulkTarget()
	if err != nil {
		return fail(fmt.Errorf("start the bulk target: %w", err))
	}
	defer target.Close()
	ep, err := env.Expose(ctx, "bench-parallel", target.Addr())
	if err != nil {
		return fail(err)
	}

	per := cfg.BulkSize / ParallelStreams
	for _, op := range bulkDirections {
		for _, p := range Paths {
			if _, err := parallelTransfer(ctx, ep.Addr(p), op, min(per, warmupSize/ParallelStreams)); err != nil {
				return fail(fmt.Errorf("%s warm-up, %s: %w", dirName(op), p, err))
			}
		}
	}
	results := make([][numPaths][]float64, len(bulkDirections))
	for run := 1; run <= cfg.Runs; run++ {
		for i, op := range bulkDirections {
			for _, p := range Paths {
				v, err := parallelTransfer(ctx, ep.Addr(p), op, per)
				if err != nil {
					return fail(fmt.Errorf("%s, %s, run %d: %w", dirName(op), p, run, err))
				}
				results[i][p] = append(results[i][p], v)
				env.progress("%d streams %s run %d/%d: %-15s %8.1f MB/s", ParallelStreams, dirName(op), run, cfg.Runs, p, v)
			}
		}
	}
	for i := range rows {
		rows[i].Direct = measurement(results[i][PathDirect])
		rows[i].Relay = measurement(results[i][PathRelay])
		rows[i].Tunnel = measurement(results[i][PathTunnel])
		rows[i] = rows[i].relative(atLeastOp, parallelBudget, againstRelay, rows[i].Relay.Median)
	}
	return rows
}

// parallelTransfer opens ParallelStreams transfers of per bytes each to
// addr, starts them together once all are ready, and returns the aggregate
// rate in MB/s.
func parallelTransfer(ctx context.Context, addr string, op byte, per int64) (float64, error) {
	xs := make([]*pending, ParallelStreams)
	defer func() {
		for _, x := range xs {
			if x != nil {
				x.close()
			}
		}
	}()
	errs := make([]error, len(xs))
	var wg sync.WaitGroup
	for i := range xs {
		wg.Go(func() { xs[i], errs[i] = openTransfer(ctx, addr, op, per) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return 0, fmt.Errorf("stream %d: %w", i, err)
		}
	}
	start := time.Now()
	for i, x := range xs {
		wg.Go(func() { _, errs[i] = x.run() })
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i, err := range errs {
		if err != nil {
			return 0, fmt.Errorf("stream %d: %w", i, err)
		}
	}
	return mbps(per*int64(len(xs)), elapsed), nil
}
