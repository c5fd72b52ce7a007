package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// Validity of what init creates. Rotation comes with `agent rotate` and
// certificate reload; until then these are long.
const (
	caValidity     = 10 * 365 * 24 * time.Hour
	serverValidity = 5 * 365 * 24 * time.Hour
)

func (a *app) initCmd() *cobra.Command {
	var (
		dir         string
		hostnames   []string
		listen      string
		adminListen string
		database    string
	)
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a config, a private CA, a server certificate and an admin credential",
		Long: `init writes, into DIR:

  tunnel-server.toml  the server config; agents connect to --listen (TCP and UDP)
  ca.crt, ca.key      a private certificate authority (keep ca.key private)
  server.crt/.key     the server's certificate for the --hostname names
  admin.token         the credential of the admin endpoint
  
Agents pin ca.crt (tunnel-server agent add writes it into their config). The
first --hostname, with the port of --listen, is the address written into
agent configs; it must be a name or address agents can reach.

The config names the registry database, --database (default tunnel.db in
DIR), which 'tunnel-server run' creates. Under the systemd unit in
packaging/, DIR is read-only to the server: put the database in its state
directory, /var/lib/tunnel-server.

init refuses to overwrite any of these files.`,
		Example: `  tunnel-server init --dir /etc/tunnel-server --hostname tunnel.example.com --database /var/lib/tunnel-server/tunnel.db
  tunnel-server init --dir ./srv --hostname localhost --hostname 127.0.0.1 --listen 127.0.0.1:7443`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return cli.Usage(errors.New("--dir is required"))
			}
			return runInit(cmd, dir, hostnames, listen, adminListen, database)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory to write into (created if missing)")
	f.StringArrayVar(&hostnames, "hostname", []string{"localhost", "127.0.0.1"}, "name or IP address agents use to reach the server; repeat for several")
	f.StringVar(&listen, "listen", config.DefaultListen, "address agents connect to")
	f.StringVar(&adminListen, "admin-listen", config.DefaultAdminListen, "admin endpoint: a loopback host:port or unix:/path/to.sock")
	f.StringVar(&database, "database", config.DefaultDatabase, "the registry database file, written by run; relative to DIR unless absolute")
	return cmd
}

func runInit(cmd *cobra.Command, dir string, hostnames []string, listen, adminListen, database string) (err error) {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return cli.Usage(fmt.Errorf("--listen %q: %v", listen, err))
	}
	if len(hostnames) == 0 || hostnames[0] == "" {
		return cli.Usage(errors.New("--hostname: at least one name is needed"))
	}
	files := []string{config.ServerFile, config.CAFile, caKeyFile, config.ServerCertFile, config.ServerKeyFile, config.TokenFile}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%s already exists; init does not overwrite (remove it, or use another --dir)", filepath.Join(dir, f))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}

	ca, err := auth.NewCA("tunnel-server CA "+hostnames[0], caValidity)
	if err != nil {
		return err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.IssueServerCert(hostnames, serverValidity)
	if err != nil {
		return cli.Usage(fmt.Errorf("--hostname: %w", err))
	}
	token, err := auth.NewToken()
	if err != nil {
		return err
	}
	writes := []struct {
		name string
		data []byte
		mode fs.FileMode
	}{
		{config.CAFile, ca.CertPEM(), 0o644},
		{caKeyFile, caKey, 0o600},
		{config.ServerCertFile, certPEM, 0o644},
		{config.ServerKeyFile, keyPEM, 0o600},
		{config.TokenFile, []byte(token + "\n"), 0o600},
	}
	// Nothing half-created: on any failure, remove what was written.
	var written []string
	defer func() {
		if err != nil {
			for _, p := range written {
				os.Remove(p)
			}
		}
	}()
	cfgPath := filepath.Join(dir, config.ServerFile)
	err = config.WriteServerFile(cfgPath, config.ServerTemplate{
		Listen:        listen,
		PublicAddress: net.JoinHostPort(hostnames[0], port),
		AdminListen:   adminListen,
		Database:      database,
	})
	if err != nil {
		return cli.Usage(err)
	}
	written = append(written, cfgPath)
	for _, w := range writes {
		p := filepath.Join(dir, w.name)
		if err = writeNew(p, w.data, w.mode); err != nil {
			return err
		}
		written = append(written, p)
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "Wrote %s, ca.crt, ca.key, server.crt, server.key and admin.token in %s.\n", config.ServerFile, dir)
	fmt.Fprintf(out, "Agents will connect to %s (certificate for %v).\n\n", net.JoinHostPort(hostnames[0], port), hostnames)
	fmt.Fprintf(out, "Next:\n  tunnel-server run --config %s\n  tunnel-server agent add NAME --config %s\n", cfgPath, cfgPath)
	return nil
}

// caKeyFile holds the CA's private key. tunnel-server run does not read it.
const caKeyFile = "ca.key"

// writeNew creates path with mode and data, refusing to overwrite.
func writeNew(path string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
