package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tunnelrelay/tunnel/internal/proto"
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
	results := make([]CheckResult, len(a.targets.Load().names)+1)
	var wg sync.WaitGroup
	for i, name := range a.targets.Load().names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = a.checkTarget(ctx, name)
		}()
	}
	results[len(a.targets.Load().names)] = a.checkServer(ctx)
	wg.Wait()
	return results
}

// checkTarget dials a target the way a session does, PROXY header (a
// LOCAL one: there is no client) and TLS included, and hangs up.
func (a *Agent) checkTarget(ctx context.Context, name string) CheckResult {
	d := a.targets.Load().byName[name]
	addr := d.target.Address
	r := CheckResult{What: "target " + name}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, a.opt.DialTimeout)
	defer cancel()
	c, err := d.dial(ctx, "")
	if err != nil {
		r.Detail = fmt.Sprintf("%s: %v", addr, err)
		return r
	}
	elapsed := time.Since(start)
	var extra []string
	if tc, ok := c.(*tls.Conn); ok {
		extra = append(extra, fmt.Sprintf("%s %s", tls.VersionName(tc.ConnectionState().Version), d.target.TLS))
	}
	if d.target.ProxyProtocol {
		extra = append(extra, "PROXY header sent")
	}
	c.Close()
	r.OK = true
	r.Detail = fmt.Sprintf("%s reachable", addr)
	if len(extra) > 0 {
		r.Detail += ", " + strings.Join(extra, ", ")
	}
	r.Detail += fmt.Sprintf(" (connected in %v)", elapsed.Round(time.Millisecond))
	return r
}

// checkServer connects to the server the way Run does, through the proxy
// if there is one, and says so.
func (a *Agent) checkServer(ctx context.Context) CheckResult {
	r := CheckResult{What: "server"}
	server := a.opt.ServerAddress
	if a.proxied() {
		server += " through HTTP proxy " + a.opt.Proxy.Redacted()
	}
	start := time.Now()
	c, err := a.connect(ctx, true)
	if err != nil {
		r.Detail = connErrDetail(server, err)
		return r
	}
	c.sess.Close()
	r.OK = true
	r.Detail = fmt.Sprintf("%s accepted agent %q over %s (server %s, %v)", server, a.opt.Name,
		c.sess.Transport(), c.welcome.ServerVersion, time.Since(start).Round(time.Millisecond))
	if c.fallback != "" {
		r.Detail += "; " + c.fallback
	}
	return r
}

// connErrDetail says why check could not connect to server. A refusal
// says "refused by server" itself.
func connErrDetail(server string, err error) string {
	var ref *proto.Refuse
	if errors.As(err, &ref) {
		return fmt.Sprintf("%s: %v", server, ref)
	}
	return fmt.Sprintf("%s: %s: %v", server, describeConnErr(err, false), err)
}
