package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/admin"
)

// TestPrintAgentsFallback: an agent on TLS because QUIC failed is marked in
// the TRANSPORT column and the reason is printed under the table; one on
// its preferred transport is not.
func TestPrintAgentsFallback(t *testing.T) {
	since := time.Now().Add(-time.Minute)
	agents := []admin.Agent{
		{Name: "acme", Online: true, Since: &since, Remote: "10.0.0.1:5000", Transport: "tls",
			Fallback: "QUIC failed: no QUIC handshake within 3s (is UDP blocked on the way?)"},
		{Name: "globex", Online: true, Since: &since, Remote: "10.0.0.2:5000", Transport: "quic"},
	}
	var out bytes.Buffer
	cmd := &cobra.Command{}
	cmd.SetOut(&out)
	printAgents(cmd, agents)
	lines := strings.Split(out.String(), "\n")
	var acme, globex string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "acme "):
			acme = l
		case strings.HasPrefix(l, "globex "):
			globex = l
		}
	}
	if !strings.Contains(acme, " tls* ") {
		t.Errorf("acme's row lacks the mark: %q", acme)
	}
	if strings.Contains(globex, "*") {
		t.Errorf("globex's row is marked: %q", globex)
	}
	want := "* acme is on tls instead of QUIC: QUIC failed: no QUIC handshake within 3s (is UDP blocked on the way?)"
	if !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
	if strings.Contains(out.String(), "* globex") {
		t.Errorf("a reason is printed for globex:\n%s", out.String())
	}
}
