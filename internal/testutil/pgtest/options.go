package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// Options change the server StartWith starts. The zero value is Start's.
type Options struct {
	// TLS turns ssl on, with a certificate for 127.0.0.1 and localhost
	// signed by a CA made for this server alone, whose PEM is in
	// Server.CAPEM. Clients may still connect without TLS.
	TLS bool
	// ScramUser, when set, is a login role created with ScramPassword
	// stored as SCRAM-SHA-256. It must authenticate with that password over
	// TCP from 127.0.0.1 (a pg_hba line ahead of the trust lines says so);
	// every other role keeps trust authentication.
	ScramUser string
	// ScramPassword is ScramUser's password. Required with ScramUser.
	ScramPassword string
}

func (o Options) check() error {
	switch {
	case o.ScramUser == "" && o.ScramPassword != "":
		return errors.New("Options.ScramPassword without ScramUser")
	case o.ScramUser != "" && o.ScramPassword == "":
		return errors.New("Options.ScramUser without ScramPassword")
	case strings.ContainsFunc(o.ScramUser, func(r rune) bool { return r <= ' ' || r == '"' || r == 0x7f }):
		return fmt.Errorf("Options.ScramUser %q: no spaces, quotes or control characters, please", o.ScramUser)
	}
	return nil
}

// ScramDSN returns a URL for pgx and psql that logs in as
// Options.ScramUser with its password:
// postgres://USER:PASSWORD@127.0.0.1:PORT/DB?sslmode=disable. It is empty
// without a ScramUser.
func (s *Server) ScramDSN() string {
	if s.opts.ScramUser == "" {
		return ""
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(s.opts.ScramUser, s.opts.ScramPassword),
		Host:     s.Addr(),
		Path:     "/" + s.Database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// applyOptions writes what the options need into the fresh cluster,
// before its first start.
func (s *Server) applyOptions() error {
	var conf []string
	if s.opts.TLS {
		certFile, keyFile, err := s.writeTLSFiles()
		if err != nil {
			return fmt.Errorf("TLS files: %v", err)
		}
		conf = append(conf, "ssl = on",
			fmt.Sprintf("ssl_cert_file = '%s'", certFile),
			fmt.Sprintf("ssl_key_file = '%s'", keyFile))
	}
	if s.opts.ScramUser != "" {
		conf = append(conf, "password_encryption = 'scram-sha-256'")
		hba := filepath.Join(s.DataDir(), "pg_hba.conf")
		old, err := os.ReadFile(hba)
		if err != nil {
			return err
		}
		// The first matching line decides, so this one goes ahead of the
		// trust lines initdb wrote.
		line := fmt.Sprintf("# pgtest\nhost all \"%s\" 127.0.0.1/32 scram-sha-256\n", s.opts.ScramUser)
		if err := os.WriteFile(hba, append([]byte(line), old...), 0o600); err != nil {
			return err
		}
	}
	if len(conf) == 0 {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(s.DataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("\n# pgtest options\n" + strings.Join(conf, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeTLSFiles makes a CA and a server certificate for 127.0.0.1 and
// localhost, valid for a day, keeps the CA's PEM in s.CAPEM and writes the
// server's certificate and key where postgres, running as the server
// account, accepts them (the key readable by that account alone).
func (s *Server) writeTLSFiles() (certFile, keyFile string, err error) {
	ca, err := auth.NewCA("pgtest CA", 24*time.Hour)
	if err != nil {
		return "", "", err
	}
	certPEM, keyPEM, err := ca.IssueServerCert([]string{"localhost", "127.0.0.1"}, 24*time.Hour)
	if err != nil {
		return "", "", err
	}

	dir := filepath.Join(s.Dir, "tls")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	for path, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return "", "", err
		}
	}
	if s.acct.switched {
		for _, p := range []string{dir, certFile, keyFile} {
			if err := os.Chown(p, int(s.acct.uid), int(s.acct.gid)); err != nil {
				return "", "", err
			}
		}
	}
	s.CAPEM = string(ca.CertPEM())
	return certFile, keyFile, nil
}

// createScramRole creates Options.ScramUser, connecting as the superuser
// (trust).
func (s *Server) createScramRole(ctx context.Context) error {
	if s.opts.ScramUser == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		return fmt.Errorf("connect to create role %q: %v", s.opts.ScramUser, err)
	}
	defer conn.Close(ctx)
	// A password cannot be a parameter of CREATE ROLE; it goes as a
	// literal (standard_conforming_strings is on by default).
	sql := fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'",
		pgx.Identifier{s.opts.ScramUser}.Sanitize(), strings.ReplaceAll(s.opts.ScramPassword, "'", "''"))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("create role %q: %v", s.opts.ScramUser, err)
	}
	return nil
}
