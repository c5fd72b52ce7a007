package agent

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// CheckResult is the outcome of one check of `tunnel-agent check`.
type CheckResult struct {
	// What was checked: "server" or "target NAME".
	What string
	OK   bool
	// Detail says what happened.
	Detail string
}

// Check dials every target and connects to the server once, with a probe
// hello that verifies the agent's credential without taking the place of a
// running copy of the agent. Results come targets first, in config order,
// then the server.
func (a *Agent) Check(ctx context.Context) []CheckResult {
	results := make([]CheckResult, len(a.names)+1)
	var wg sync.WaitGroup
	for i, name := range a.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = a.checkTarget(ctx, name)
		}()
	}
	results[len(a.names)] = a.checkServer(ctx)
	wg.Wait()
	return results
}

func (a *Agent) checkTarget(ctx context.Context, name string) CheckResult {
	addr := a.targets[name]
	r := CheckResult{What: "target " + name}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, a.opt.DialTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		r.Detail = fmt.Sprintf("%s: %v", addr, err)
		return r
	}
	c.Close()
	r.OK = true
	r.Detail = fmt.Sprintf("%s reachable (connected in %v)", addr, time.Since(start).Round(time.Millisecond))
	return r
}

func (a *Agent) checkServer(ctx context.Context) CheckResult {
	r := CheckResult{What: "server"}
	start := time.Now()
	c, err := a.connect(ctx, true)
	if err != nil {
		r.Detail = fmt.Sprintf("%s: %s: %v", a.opt.ServerAddress, describeConnErr(err, false), err)
		return r
	}
	c.sess.Close()
	r.OK = true
	r.Detail = fmt.Sprintf("%s accepted agent %q over %s (server %s, %v)", a.opt.ServerAddress, a.opt.Name,
		c.sess.Transport(), c.welcome.ServerVersion, time.Since(start).Round(time.Millisecond))
	if c.fallback != "" {
		r.Detail += "; " + c.fallback
	}
	return r
}
