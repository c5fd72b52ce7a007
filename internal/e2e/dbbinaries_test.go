package e2e

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/mariadbtest"
	"github.com/tunnelrelay/tunnel/internal/testutil/pgtest"
)

// TestBinariesDatabases: from the built binaries, two postgres routes share
// one port, with [postgres] domain set in the server's config; psql reaches
// each by host name and the default without one; route list shows the
// protocol and the default; a tcp route cannot join the port. A mysql route
// reaches MariaDB through a target with proxy_protocol = true in the
// agent's config file. With the agent stopped, psql and mariadb are told.
func TestBinariesDatabases(t *testing.T) {
	pg := pgtest.Start(t)
	my := mariadbtest.Start(t, mariadbtest.Options{ProxyProtocolNetworks: "127.0.0.0/8"})
	c := newCluster(t, map[string]string{"pg": pg.Addr(), "pg2": pg.Addr()})
	appendFile(t, c.agentCfg, fmt.Sprintf("\n[[targets]]\nname = \"my\"\naddress = %q\nproxy_protocol = true\n", my.Addr()))
	setKey(t, c.serverCfg, "domain", `"db.test"`)
	// Clients of a stopped agent wait this long for its successor.
	setKey(t, c.serverCfg, "open_timeout", `"2s"`)
	c.server.kill()
	c.startServer(t)
	c.startAgent(t)
	c.waitOnline(t, 10*time.Second)

	myAddr := c.addRoute(t, "orders", "my", "--protocol", "mysql")
	// MariaDB sees the client's own address, from the PROXY header: the
	// loopback address and a port, not the agent's.
	host := my.Query(t, myAddr, "select host from information_schema.processlist where id = connection_id()")
	c.agent.log.waitFor(t, 5*time.Second, "session ended", "route=orders")
	if !strings.HasPrefix(host, "127.0.0.1:") || !strings.Contains(c.server.log.String(), "client="+host) {
		t.Errorf("MariaDB sees the client as %q, which the server did not log as a client", host)
	}

	addr := c.addRoute(t, "sales", "pg", "--protocol", "postgres")
	r := c.srv(t, "route", "add", "hr", "--agent", "acme", "--target", "pg2", "--listen", addr, "--protocol", "postgres")
	if r.code != 0 || !strings.Contains(r.stdout, "options=tunnel_route=hr") {
		t.Fatalf("second route on %s: %d %s%s", addr, r.code, r.stdout, r.stderr)
	}
	r = c.srv(t, "route", "add", "raw", "--agent", "acme", "--target", "pg", "--listen", addr)
	if r.code == 0 || !strings.Contains(r.stderr, "only postgres routes can share an address") {
		t.Fatalf("tcp route on a postgres port: %d %s%s", r.code, r.stdout, r.stderr)
	}
	list := c.srv(t, "route", "list").stdout
	for _, re := range []string{`(?m)^hr\s+` + regexp.QuoteMeta(addr) + `\s+acme\s+pg2\s+postgres\s+no\s`,
		`(?m)^sales\s+` + regexp.QuoteMeta(addr) + `\s+acme\s+pg\s+postgres\s+yes\s`} {
		if !regexp.MustCompile(re).MatchString(list) {
			t.Errorf("route list does not match %s:\n%s", re, list)
		}
	}

	// status shows each route's protocol as route list does.
	st := c.srv(t, "status").stdout
	for _, re := range []string{`(?m)^hr\s+\S+\s+acme\s+pg2\s+postgres\s+no\s`, `(?m)^orders\s+\S+\s+acme\s+my\s+mysql\s+-\s`} {
		if !regexp.MustCompile(re).MatchString(st) {
			t.Errorf("status does not match %s:\n%s", re, st)
		}
	}

	host, port, _ := net.SplitHostPort(addr)
	conninfo := func(hostName string) string {
		return fmt.Sprintf("host=%s hostaddr=%s port=%s user=%s dbname=%s sslmode=require", hostName, host, port, pg.User, pg.Database)
	}
	for _, tc := range []struct{ host, route string }{{"hr.db.test", "hr"}, {"localhost", "sales"}} {
		out, err := psqlConn(t, pg, conninfo(tc.host), "select 'ok'")
		if err != nil || out != "ok" {
			t.Fatalf("psql host=%s: %q %v", tc.host, out, err)
		}
		c.server.log.waitFor(t, 5*time.Second, "session ended", "route="+tc.route)
	}

	// A stopping agent says goodbye, so the server knows at once.
	c.agent.cmd.Process.Signal(syscall.SIGTERM)
	c.agent.wait(t, 10*time.Second)
	waitUntil(t, 10*time.Second, func() bool {
		return regexp.MustCompile(`(?m)^acme\s+offline`).MatchString(c.srv(t, "agent", "list").stdout)
	})
	out, err := psqlConn(t, pg, conninfo("hr.db.test"), "select 1")
	if err == nil || !strings.Contains(out, `FATAL:  route "hr": agent "acme" is not connected`) {
		t.Fatalf("psql with the agent offline printed:\n%s", out)
	}
	t.Logf("psql with the agent offline prints:\n%s", out)
	b, err := my.ClientCommand(t, "mariadb", myAddr, "--execute=select 1").CombinedOutput()
	if err == nil || !strings.Contains(string(b), `ERROR 1105 (08S01): tunnel: route "orders": agent "acme" is not connected`) {
		t.Fatalf("mariadb with the agent offline printed:\n%s", b)
	}
	t.Logf("mariadb with the agent offline prints:\n%s", b)
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// appendTarget declares a target in an agent config file.
func appendTarget(t *testing.T, path, name, addr string) {
	t.Helper()
	appendFile(t, path, fmt.Sprintf("\n[[targets]]\nname = %q\naddress = %q\n", name, addr))
}

// setKey sets a commented-out key of a config file written from a template.
func setKey(t *testing.T, path, key, value string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^# ` + key + ` = .*$`)
	if !re.Match(b) {
		t.Fatalf("no %s line to uncomment in %s", key, path)
	}
	if err := os.WriteFile(path, re.ReplaceAll(b, []byte(key+" = "+value)), 0o600); err != nil {
		t.Fatal(err)
	}
}
