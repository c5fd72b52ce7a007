package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/testutil/samples"
	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
)

// packagingDir holds the sample config, which sets every key.
const packagingDir = "../../packaging"

// TestLoadExample: the engine accepts every target option the sample
// config sets.
func TestLoadExample(t *testing.T) {
	a := &app{Globals: cli.Globals{Config: samples.Write(t, packagingDir, samples.AgentFile)}}
	cfg, eng, err := a.load(logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if eng == nil || len(cfg.Targets) != 3 {
		t.Fatalf("engine %v, %d targets", eng, len(cfg.Targets))
	}
}

// TestCheckTargetOptions: `tunnel-agent check` dials a target with the
// options of its config: a PROXY header (LOCAL, there is no client), then
// SSLRequest, and reports the database's refusal of TLS.
func TestCheckTargetOptions(t *testing.T) {
	target := tcptest.Serve(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil || h.Command != proxyproto.LOCAL {
			return
		}
		var req [8]byte
		if _, err := io.ReadFull(br, req[:]); err != nil || binary.BigEndian.Uint32(req[4:]) != 80877103 {
			return
		}
		c.Write([]byte("N"))
		io.Copy(io.Discard, c)
	})
	b := samples.Read(t, packagingDir, samples.AgentFile)
	doc := string(b[:bytes.Index(b, []byte("\n[[targets]]"))+1])
	doc = strings.Replace(doc, `address = "tunnel.example.com:7443"`, `address = "127.0.0.1:1"`, 1)
	doc = strings.Replace(doc, `transport = "auto"`, `transport = "tls"`, 1)
	doc += "[[targets]]\nname = \"db\"\naddress = \"" + target + "\"\nproxy_protocol = true\ntls = \"require\"\n"
	path := filepath.Join(t.TempDir(), "tunnel-agent.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"check", "--config", path})
	if err := root.ExecuteContext(ctx); err == nil {
		t.Fatalf("check passed:\n%s", out.String())
	}
	// Without the header first, the target hangs up instead.
	if want := "does not accept TLS (answered N to SSLRequest)"; !strings.Contains(out.String(), want) {
		t.Fatalf("check output lacks %q:\n%s", want, out.String())
	}
}
