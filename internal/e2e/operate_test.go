package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// TestBinariesReloadAndDrain changes a running agent and server as an
// operator would, from the built binaries: a target added to the agent's
// file and `tunnel-agent reload`, a renewed server certificate and SIGHUP,
// then SIGTERM to the agent and a new agent process, as for an upgrade. A
// session in flight lives through all of it, the agent never reconnects
// until it stops, and a client that connects while it drains is served by
// its successor.
func TestBinariesReloadAndDrain(t *testing.T) {
	c := newCluster(t, map[string]string{"echo": tcptest.Echo(t)})
	c.startAgent(t)
	c.waitOnline(t, 10*time.Second)
	echoRoute := c.addRoute(t, "echo", "echo")
	twoRoute := c.addRoute(t, "two", "two")
	busy := startBusySession(t, echoRoute)

	// The agent's file gains a target; reload makes it usable.
	appendTarget(t, c.agentCfg, "two", tcptest.Echo(t))
	r := run(t, "tunnel-agent", "reload", "--config", c.agentCfg, "--pid-file", c.pidFile())
	if r.code != 0 || !strings.Contains(r.stdout, "Sent SIGHUP to tunnel-agent") {
		t.Fatalf("reload: %d %s%s", r.code, r.stdout, r.stderr)
	}
	c.agent.log.waitFor(t, 5*time.Second, "config reloaded", "targets_added=[two]")
	c.server.log.waitFor(t, 5*time.Second, "agent reloaded its targets", "targets=\"[echo two]\"")
	exchangeWithin(t, twoRoute, 5*time.Second)

	// A config that does not load changes nothing.
	good, err := os.ReadFile(c.agentCfg)
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, c.agentCfg, "\nnonsense = 1\n")
	// With --pid-file, reload does not read the file itself: the running
	// agent finds the error.
	if r := run(t, "tunnel-agent", "reload", "--pid-file", c.pidFile()); r.code != 0 {
		t.Fatalf("reload with a bad file: %d %s", r.code, r.stderr)
	}
	c.agent.log.waitFor(t, 5*time.Second, "reload failed; the running config stays in effect", "nonsense")
	if err := os.WriteFile(c.agentCfg, good, 0o600); err != nil {
		t.Fatal(err)
	}
	exchangeWithin(t, twoRoute, 5*time.Second)

	// A renewed server certificate is presented from the SIGHUP on.
	srvDir := filepath.Dir(c.serverCfg)
	serial := renewServerCert(t, srvDir)
	c.server.cmd.Process.Signal(syscall.SIGHUP)
	c.server.log.waitFor(t, 5*time.Second, "config reloaded")
	if got := presentedSerial(t, srvDir, agentServerAddr(t, c.agentCfg)); got.Cmp(serial) != 0 {
		t.Fatalf("the server presents certificate %v after SIGHUP, want the renewed %v", got, serial)
	}
	if r := run(t, "tunnel-agent", "check", "--config", c.agentCfg); r.code != 0 {
		t.Fatalf("check after the certificate renewal: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A lower session limit applies to sessions that start after the
	// reload; a file that does not load changes nothing; the original
	// file back, and the limit is lifted again.
	orig, err := os.ReadFile(c.serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	setKey(t, c.serverCfg, "max_sessions_per_agent", "1")
	c.server.cmd.Process.Signal(syscall.SIGHUP)
	c.server.log.waitFor(t, 5*time.Second, "config reloaded", "max_sessions_per_agent=1 ")
	overLimit, err := net.Dial("tcp", twoRoute)
	if err != nil {
		t.Fatal(err)
	}
	defer overLimit.Close()
	overLimit.Write([]byte("x"))
	expectClosed(t, overLimit, 5*time.Second)
	c.server.log.waitFor(t, time.Second, "session refused", "at the server's limit of 1 open sessions")
	appendFile(t, c.serverCfg, "\nnonsense = 1\n")
	c.server.cmd.Process.Signal(syscall.SIGHUP)
	c.server.log.waitFor(t, 5*time.Second, "reload failed; the running config stays in effect", "nonsense")
	if err := os.WriteFile(c.serverCfg, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	c.server.cmd.Process.Signal(syscall.SIGHUP)
	c.server.log.waitForNth(t, 5*time.Second, 3, "config reloaded")
	exchangeWithin(t, twoRoute, 5*time.Second)

	if n := strings.Count(c.agent.log.String(), "connected to server"); n != 1 {
		t.Errorf("the agent connected %d times, want once: reloads must keep the connection", n)
	}

	// SIGTERM, as for an upgrade: the server sends the agent no new
	// session, the one in flight goes on, and the agent exits when it
	// ends. A client that connects meanwhile waits for the agent's
	// successor and is served by it.
	c.agent.cmd.Process.Signal(syscall.SIGTERM)
	c.agent.log.waitFor(t, 5*time.Second, "stopping: no new sessions")
	c.server.log.waitFor(t, 5*time.Second, "agent is stopping: no new sessions through this connection")
	waited := make(chan error, 1)
	go func() {
		conn, err := net.Dial("tcp", echoRoute)
		if err != nil {
			waited <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(14 * time.Second))
		waited <- checksumExchange(conn, 100_000, 6)
	}()
	select {
	case <-c.agent.done:
		t.Fatal("the agent exited with a session in flight")
	case <-time.After(300 * time.Millisecond):
	}
	busy.stop(t)
	if code := c.agent.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("agent exit code %d after a drain", code)
	}
	if _, err := os.Stat(c.pidFile()); !os.IsNotExist(err) {
		t.Errorf("the pid file is left behind: %v", err)
	}
	c.startAgent(t)
	if err := <-waited; err != nil {
		t.Fatalf("the session that waited for the restarted agent: %v", err)
	}
}

// renewServerCert issues a new server certificate from the CA that init
// wrote and puts it in place of the old one; it returns its serial.
func renewServerCert(t *testing.T, dir string) *big.Int {
	t.Helper()
	caCert, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := auth.LoadCA(caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServerCert([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.crt"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf.SerialNumber
}

// presentedSerial is the serial of the certificate the server at addr
// presents, checked against the CA in dir.
func presentedSerial(t *testing.T, dir, addr string) *big.Int {
	t.Helper()
	caCert, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caCert)
	var serial *big.Int
	conf := &tls.Config{RootCAs: pool, ServerName: "localhost", VerifyConnection: func(cs tls.ConnectionState) error {
		serial = cs.PeerCertificates[0].SerialNumber
		return nil
	}}
	// The server wants a client certificate; the handshake may fail after
	// the server's certificate has been checked, which is all this needs.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
	if err == nil {
		conn.Close()
	}
	if serial == nil {
		t.Fatalf("no certificate from %s: %v", addr, err)
	}
	return serial
}
