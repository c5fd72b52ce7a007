package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The sessions scenario runs tunnel-server and tunnel-agent as processes
// (see tunnelprocs.go) with a route to an echo target in a third process
// (benchhelper echo), so that the benchmark, the server, the agent and the
// target each hold one descriptor per session and none comes near the
// usual per-process limit.
//
//  1. Once the agent is connected and nothing else has happened, the
//     agent's settled RSS is the idle agent figure.
//  2. The benchmark opens Config.Sessions connections to the route; each
//     makes one small round trip to the echo target, so it is established
//     end to end, and then stays open and idle.
//  3. The settled RSS of each process with the sessions open, less its RSS
//     before, divided by the number of sessions, is its RSS per session.

// Budgets of DESIGN.md: at most 32 KiB RSS per idle session on each of
// server and agent; an idle agent at most 15 MiB RSS.
const (
	sessionBudgetKiB   = 32
	idleAgentBudgetMiB = 15
)

// sessionOpeners is how many sessions are opened at a time.
const sessionOpeners = 32

// sessionTimeout bounds one session's open and round trip.
const sessionTimeout = 30 * time.Second

func runSessions(ctx context.Context, env *Env) []Row {
	n := env.Config.Sessions
	idle := Row{Figure: "idle agent RSS", Unit: "MiB"}
	server := Row{Figure: fmt.Sprintf("%d idle sessions, server RSS per session", n), Unit: "KiB"}
	agent := Row{Figure: fmt.Sprintf("%d idle sessions, agent RSS per session", n), Unit: "KiB"}
	rows := func() []Row { return []Row{idle, server, agent} }
	fail := func(err error) []Row {
		for _, r := range []*Row{&idle, &server, &agent} {
			if r.Measured() && len(r.Tunnel.Runs) == 0 {
				skipOrFail(r, err)
			}
		}
		return rows()
	}

	bins, err := env.binaries(ctx)
	if err != nil {
		return fail(err)
	}
	echo, err := startHelper(ctx, bins, "echo")
	if err != nil {
		return fail(err)
	}
	defer echo.stop(procStopGrace)
	limit := strconv.Itoa(n + 100)
	tun, err := startProcTunnel(ctx, env, bins, "bench-sessions", echo.addr,
		[]string{"TUNNEL_SERVER_LIMITS_MAX_SESSIONS_PER_AGENT=" + limit},
		[]string{"TUNNEL_AGENT_AGENT_MAX_SESSIONS=" + limit})
	if err != nil {
		return fail(err)
	}
	defer tun.stop()
	byTransport, err := tun.server.transports(ctx)
	if err != nil {
		return fail(err)
	}
	over := "agent connected over " + transportsText(byTransport) + " (its config's default)"

	env.progress("sessions: agent connected over %s; letting RSS settle", transportsText(byTransport))
	before, err := settledRSS(ctx, tun.server.pid(), tun.agent.pid())
	if err != nil {
		return fail(fmt.Errorf("read RSS: %w", err))
	}
	idle.Tunnel = measurement([]float64{float64(before[1]) / (1 << 20)})
	idle = idle.absolute(atMostOp, idleAgentBudgetMiB)
	idle.Note = over + ", no session yet"
	env.progress("sessions: idle agent RSS %.1f MiB, server %.1f MiB", float64(before[1])/(1<<20), float64(before[0])/(1<<20))

	env.progress("sessions: opening %d sessions through %s", n, tun.route)
	start := time.Now()
	conns, err := openSessions(ctx, tun.route, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		return fail(err)
	}
	env.progress("sessions: %d open in %v; letting RSS settle", len(conns), time.Since(start).Round(100*time.Millisecond))
	if err := tun.alive(); err != nil {
		return fail(err)
	}
	after, err := settledRSS(ctx, tun.server.pid(), tun.agent.pid())
	if err != nil {
		return fail(fmt.Errorf("read RSS: %w", err))
	}
	if err := tun.alive(); err != nil {
		return fail(err)
	}
	perSession := func(i int) float64 { return float64(after[i]-before[i]) / float64(n) / 1024 }
	for i, r := range []*Row{&server, &agent} {
		r.Tunnel = measurement([]float64{perSession(i)})
		*r = r.absolute(atMostOp, sessionBudgetKiB)
		r.Note = fmt.Sprintf("RSS %s before, %s with the sessions open; %s", mib(before[i]), mib(after[i]), over)
	}
	env.progress("sessions: server %.1f KiB and agent %.1f KiB per session", perSession(0), perSession(1))
	return rows()
}

// openSessions opens n connections to addr, each with one echoed round
// trip, sessionOpeners at a time. It returns the open connections, and an
// error if any session failed (the connections opened so far are returned
// too, for the caller to close).
func openSessions(ctx context.Context, addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var (
		next     atomic.Int64
		firstErr error
		failed   atomic.Int64
		mu       sync.Mutex
		wg       sync.WaitGroup
	)
	for range min(sessionOpeners, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil || failed.Load() > 0 {
					return
				}
				c, err := openSession(ctx, addr, i)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("session %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	open := conns[:0]
	for _, c := range conns {
		if c != nil {
			open = append(open, c)
		}
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return open, fmt.Errorf("opened %d of %d sessions: %w", len(open), n, firstErr)
	}
	return open, nil
}

// openSession connects and makes one round trip through the echo target.
func openSession(ctx context.Context, addr string, i int) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, sessionTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	msg := fmt.Appendf(nil, "session %08d\n", i)
	if _, err := c.Write(msg); err != nil {
		c.Close()
		return nil, err
	}
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(c, back); err != nil {
		c.Close()
		if errors.Is(err, io.EOF) {
			err = errors.New("closed before the echo came back (a limit reached?)")
		}
		return nil, err
	}
	if string(back) != string(msg) {
		c.Close()
		return nil, fmt.Errorf("echo %q, want %q", back, msg)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// mib formats a byte count in MiB with one decimal.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
