package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// ErrUnavailable is returned (wrapped) by Launch when this machine cannot run
// a throwaway PostgreSQL: the binaries are missing (the error also wraps
// ErrNotInstalled), or we run as root and there is no unprivileged OS user to
// run the server as. Start skips a test in the same situations.
var ErrUnavailable = errors.New("PostgreSQL unavailable")

// Launch is Start for programs that are not tests, such as the benchmark
// command: it creates and starts the same kind of server (see Start), and
// returns an error instead of skipping or failing a test. The caller must
// Close the server, which stops it and deletes its directory.
//
// ctx bounds initdb; once Launch has returned, the server lives until Close.
func Launch(ctx context.Context) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	acct, err := serverAccount()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	dir, err := newTempDir(acct)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := newServer(bin, acct, dir)
	if err := s.initdbContext(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := ctx.Err(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.startOnFreePort(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	return s, nil
}

// Close stops the server (see Stop) and removes its directory with the data
// and the log. It is for servers from Launch; a server from Start is closed
// when its test ends.
func (s *Server) Close() error {
	s.Stop()
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("pgtest: remove %s: %w", s.Dir, err)
	}
	return nil
}
