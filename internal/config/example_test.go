package config

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/samples"
)

// packagingDir holds the sample configs, which set or show every key.
var packagingDir = filepath.Join("..", "..", "packaging")

// The sample configs stay valid (the agent's once its placeholders are
// filled in), and set every key to what the defaults would be.
func TestExamples(t *testing.T) {
	agent, err := LoadAgent(samples.Write(t, packagingDir, AgentFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(agent.Targets) != 3 || agent.Agent.HalfCloseTimeout.Duration != 30*time.Second || agent.Agent.MaxHeaderSize != 4096 {
		t.Errorf("agent example: %+v", agent.Agent)
	}
	if agent.Server.Proxy != ProxyDirect || agent.ServerProxy.URL != nil {
		t.Errorf("agent example: proxy %v, resolved to %v", agent.Server.Proxy, agent.ServerProxy)
	}
	if r, ok := agent.Target("reporting"); !ok || r.TLS != TargetTLSVerifyFull || r.TLSCA == "" || r.TLSServerName != "db.internal" {
		t.Errorf("agent example, target reporting: %+v", r)
	}
	if e, ok := agent.Target("events"); !ok || !e.ProxyProtocol || e.TLS != TargetTLSRequire {
		t.Errorf("agent example, target events: %+v", e)
	}
	srv, err := LoadServer(filepath.Join(packagingDir, ServerFile))
	if err != nil {
		t.Fatal(err)
	}
	if srv.Limits != DefaultServer().Limits {
		t.Errorf("server example limits %+v differ from the defaults %+v", srv.Limits, DefaultServer().Limits)
	}
}
