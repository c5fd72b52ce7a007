package bench

import (
	"context"
	"fmt"

	"github.com/tunnelrelay/tunnel/internal/netsim"
)

// The latency scenario puts an emulated long link (internal/netsim) of
// Config.LinkRTT round trip, half each way, and Config.LinkCapacity bytes in
// flight per direction, into two paths to the same bulk target:
//
//	plain TCP: client ──▶ link ──▶ target
//	tunnel:    client ──▶ route of the server ⇄ link ⇄ agent ──▶ target
//
// The same model and settings for both, so that the difference is the
// tunnel's: its one TCP connection crosses the link, and each stream's
// flow-control window must cover the round trip, where plain TCP through a
// proxy is bound by the link alone (see the netsim package comment).
// Each transfer moves Config.LinkSize one way. Its time on the client's
// clock holds, besides the data, one crossing of the link that carries
// none: the request to send, for a download, or the target's count, for an
// upload. That one-way delay is taken off, so that it does not weigh on
// the faster path more; what stays is the data's time, which a delay line
// delivers in batches of at most its capacity per delay. The size is many
// times the capacity, so that batch boundaries move the result by a few
// percent at most.

// latencyBudget is DESIGN.md's: one stream over a 50 ms RTT link at least
// 0.8 × a plain TCP connection over the same link.
const latencyBudget = 0.8

func runLatency(ctx context.Context, env *Env) []Row {
	cfg := env.Config
	link := netsim.Config{Delay: cfg.LinkRTT / 2, Capacity: int(cfg.LinkCapacity)}
	rtt := cfg.LinkRTT.String()
	rows := make([]Row, len(bulkDirections))
	for i, op := range bulkDirections {
		rows[i] = Row{Figure: fmt.Sprintf("one stream over a %s RTT link, %s", rtt, dirName(op)), Unit: "MB/s"}
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
	ep, err := env.ExposeOverLink(ctx, "bench-link", target.Addr(), link)
	if err != nil {
		return fail(err)
	}
	paths := []Path{PathDirect, PathTunnel}
	name := map[Path]string{PathDirect: "plain TCP", PathTunnel: "tunnel"}

	for _, op := range bulkDirections {
		for _, p := range paths {
			if _, err := transfer(ctx, ep.Addr(p), op, min(cfg.LinkSize, 1<<20)); err != nil {
				return fail(fmt.Errorf("%s warm-up, %s: %w", dirName(op), name[p], err))
			}
		}
	}
	results := make([][numPaths][]float64, len(bulkDirections))
	for run := 1; run <= cfg.Runs; run++ {
		for i, op := range bulkDirections {
			for _, p := range paths {
				el, err := transfer(ctx, ep.Addr(p), op, cfg.LinkSize)
				if err != nil {
					return fail(fmt.Errorf("%s, %s, run %d: %w", dirName(op), name[p], run, err))
				}
				v := mbps(cfg.LinkSize, el-link.Delay)
				results[i][p] = append(results[i][p], v)
				env.progress("link %s run %d/%d: %-10s %8.1f MB/s", dirName(op), run, cfg.Runs, name[p], v)
			}
		}
	}
	linkRate := float64(link.Capacity) / link.Delay.Seconds() / 1e6
	for i := range rows {
		rows[i].Direct = measurement(results[i][PathDirect])
		rows[i].Tunnel = measurement(results[i][PathTunnel])
		rows[i] = rows[i].relative(atLeastOp, latencyBudget, againstDirect, rows[i].Direct.Median)
		rows[i].Note = fmt.Sprintf("direct is plain TCP over the same link: a delay line of %v each way holding at most %s per direction (at most %.0f MB/s); %s per transfer, timed less one one-way delay",
			link.Delay, formatBytes(int64(link.Capacity)), linkRate, formatBytes(cfg.LinkSize))
	}
	return rows
}
