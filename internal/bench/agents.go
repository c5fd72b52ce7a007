package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// The agents scenario runs tunnel-server as a process (see tunnelprocs.go)
// and registers Config.Agents agents through its admin API, as `tunnel-server
// agent add` does (a key made here, its fingerprint sent to the server).
// The agents are the agent engine (internal/agent) in this process, each
// with its own TLS connection and mux session, as separate tunnel-agent
// processes would have; this process's own memory is not measured. The
// server's settled RSS with every agent connected, less its RSS with all of
// them registered and none connected, divided by the number of agents, is
// the figure.

// agentBudgetKiB is DESIGN.md's: a server with 1,000 connected idle agents
// at most 100 KiB RSS per agent.
const agentBudgetKiB = 100

// agentBatch is how many agents connect at a time, so that the server's
// handshakes never queue past their timeout.
const agentBatch = 100

func runAgents(ctx context.Context, env *Env) []Row {
	n := env.Config.Agents
	row := Row{Figure: fmt.Sprintf("%d idle agents, server RSS per agent", n), Unit: "KiB"}
	fail := func(err error) []Row {
		skipOrFail(&row, err)
		return []Row{row}
	}
	bins, err := env.binaries(ctx)
	if err != nil {
		return fail(err)
	}
	srv, err := startProcServer(ctx, env, bins, "bench-agents", nil)
	if err != nil {
		return fail(err)
	}
	defer srv.stop(procStopGrace)

	env.progress("agents: registering %d agents", n)
	keys, err := registerAgents(ctx, srv.admin, n)
	if err != nil {
		return fail(err)
	}
	env.progress("agents: registered; letting RSS settle")
	before, err := settledRSS(ctx, srv.pid())
	if err != nil {
		return fail(fmt.Errorf("read RSS: %w", err))
	}

	actx, stopAgents := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopAgents()
		wg.Wait()
	}()
	start := time.Now()
	for i := 0; i < n; i += agentBatch {
		for j := i; j < min(i+agentBatch, n); j++ {
			a, err := newIdleAgent(agentName(j), keys[j], srv)
			if err != nil {
				return fail(err)
			}
			wg.Go(func() { a.Run(actx) })
		}
		want := min(i+agentBatch, n)
		err := poll(ctx, time.Minute, fmt.Sprintf("%d agents to connect", want), func() (bool, error) {
			if err := srv.alive(); err != nil {
				return false, err
			}
			online, err := srv.online(ctx)
			return err == nil && online >= want, nil // a failed query is asked again
		})
		if err != nil {
			return fail(err)
		}
	}
	env.progress("agents: %d connected in %v; letting RSS settle", n, time.Since(start).Round(100*time.Millisecond))
	after, err := settledRSS(ctx, srv.pid())
	if err != nil {
		return fail(fmt.Errorf("read RSS: %w", err))
	}
	byTransport, err := srv.transports(ctx)
	if err != nil {
		return fail(err)
	}
	if online, _ := srv.online(ctx); online != n {
		return fail(fmt.Errorf("%d of %d agents online after settling", online, n))
	}
	perAgent := float64(after[0]-before[0]) / float64(n) / 1024
	row.Tunnel = measurement([]float64{perAgent})
	row = row.absolute(atMostOp, agentBudgetKiB)
	row.Note = fmt.Sprintf("server RSS %s with the agents registered, %s with them connected; agents (the agent engine in the benchmark's process, default options) over %s",
		mib(before[0]), mib(after[0]), transportsText(byTransport))
	env.progress("agents: server %.1f KiB per agent", perAgent)
	return []Row{row}
}

func agentName(i int) string { return fmt.Sprintf("bench-idle-%05d", i) }

// registerAgents makes n keys and registers their fingerprints, a few
// requests at a time.
func registerAgents(ctx context.Context, api *admin.Client, n int) ([]*auth.AgentKey, error) {
	keys := make([]*auth.AgentKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			key, err := auth.NewAgentKey()
			if err == nil {
				_, err = api.AddAgent(ctx, admin.AddAgentRequest{Name: agentName(i), Fingerprint: key.Fingerprint()})
			}
			keys[i], errs[i] = key, err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("register agent %s: %w", agentName(i), err)
		}
	}
	return keys, nil
}

// newIdleAgent is an agent engine for a registered agent, declaring one
// target it will never be asked to dial.
func newIdleAgent(name string, key *auth.AgentKey, srv *procServer) (*agent.Agent, error) {
	tlsConf, err := auth.ClientConfig(name, key, srv.caPEM, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	return agent.New(agent.Options{
		Name:          name,
		ServerAddress: srv.agentAddr,
		TLSConfig:     tlsConf,
		Targets:       []agent.Target{{Name: "db", Address: "127.0.0.1:9"}},
		Logger:        logging.Discard(),
	})
}
