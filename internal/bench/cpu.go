package bench

import (
	"context"
	"fmt"
	"time"
)

// The cpu scenario counts the CPU time the middle of each path spends
// moving bytes: for the tunnel, the tunnel-server and tunnel-agent
// processes together (see tunnelprocs.go); for the reference relay, a
// benchhelper process running both of its halves. The bulk client and
// target run in this process and are counted for neither. Each run moves
// Config.BulkSize up and then down through one path and reads the
// processes' user + system time from /proc/PID/stat before and after; the
// paths take turns within each run. Idle work during the run (the tunnel's
// heartbeats, garbage collection) counts, as it would for a user.

// cpuBudget is DESIGN.md's: CPU seconds per GiB moved, server + agent
// together, at most 1.2 × the reference relay.
const cpuBudget = 1.2

func runCPU(ctx context.Context, env *Env) []Row {
	cfg := env.Config
	row := Row{Figure: "CPU per GiB moved, server + agent", Unit: "CPU s/GiB"}
	fail := func(err error) []Row {
		skipOrFail(&row, err)
		return []Row{row}
	}
	bins, err := env.binaries(ctx)
	if err != nil {
		return fail(err)
	}
	target, err := startBulkTarget()
	if err != nil {
		return fail(fmt.Errorf("start the bulk target: %w", err))
	}
	defer target.Close()
	relay, err := startHelper(ctx, bins, "relay", target.Addr())
	if err != nil {
		return fail(err)
	}
	defer relay.stop(procStopGrace)
	// The TLS transport, whatever the agent's default: the relay is TLS
	// over TCP too, and the QUIC rows compare the transports.
	tun, err := startProcTunnel(ctx, env, bins, "bench-cpu", target.Addr(), nil, []string{"TUNNEL_AGENT_SERVER_TRANSPORT=tls"})
	if err != nil {
		return fail(err)
	}
	defer tun.stop()
	if m, err := tun.server.transports(ctx); err != nil || m["tls"] != 1 {
		return fail(fmt.Errorf("the agent is not connected over TLS: %s (%v)", transportsText(m), err))
	}

	paths := []struct {
		path Path
		addr string
		pids []int
	}{
		{PathRelay, relay.addr, []int{relay.pid()}},
		{PathTunnel, tun.route, []int{tun.server.pid(), tun.agent.pid()}},
	}
	for _, p := range paths {
		for _, op := range bulkDirections {
			if _, err := transfer(ctx, p.addr, op, min(warmupSize, cfg.BulkSize)); err != nil {
				return fail(fmt.Errorf("%s warm-up, %s: %w", dirName(op), p.path, err))
			}
		}
	}
	var results [numPaths][]float64
	var rates [numPaths][]float64
	for run := 1; run <= cfg.Runs; run++ {
		for _, p := range paths {
			before, err := cpuOf(p.pids...)
			if err != nil {
				return fail(fmt.Errorf("read CPU time: %w", err))
			}
			start := time.Now()
			for _, op := range bulkDirections {
				if _, err := transfer(ctx, p.addr, op, cfg.BulkSize); err != nil {
					return fail(fmt.Errorf("%s, %s, run %d: %w", dirName(op), p.path, run, err))
				}
			}
			elapsed := time.Since(start)
			after, err := cpuOf(p.pids...)
			if err != nil {
				return fail(fmt.Errorf("read CPU time: %w", err))
			}
			moved := float64(2*cfg.BulkSize) / (1 << 30)
			v := (after - before).Seconds() / moved
			results[p.path] = append(results[p.path], v)
			rates[p.path] = append(rates[p.path], mbps(2*cfg.BulkSize, elapsed))
			env.progress("cpu run %d/%d: %-15s %6.2f CPU s/GiB (%.1f CPU s over %v)", run, cfg.Runs, p.path, v, (after - before).Seconds(), elapsed.Round(100*time.Millisecond))
		}
	}
	if err := tun.alive(); err != nil {
		return fail(err)
	}
	row.Relay = measurement(results[PathRelay])
	row.Tunnel = measurement(results[PathTunnel])
	row = row.relative(atMostOp, cpuBudget, againstRelay, row.Relay.Median)
	row.Note = fmt.Sprintf("/proc/PID/stat utime+stime of tunnel-server + tunnel-agent (over TLS) vs one relay process, %s each way per run; "+
		"median throughput meanwhile %.0f MB/s through the tunnel, %.0f MB/s through the relay",
		formatBytes(cfg.BulkSize), median(rates[PathTunnel]), median(rates[PathRelay]))
	return []Row{row}
}
