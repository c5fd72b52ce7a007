package dbproxy

// The PostgreSQL front door. A client's startup phase, in order:
//
//  1. Negotiation. GSSENCRequest is answered 'N'. SSLRequest is answered
//     'S' and TLS is terminated here (or 'N' without a certificate); bytes
//     sent after the SSLRequest, before the TLS handshake, are refused. A
//     first byte of 0x16 is PostgreSQL 17's direct TLS, which must offer the
//     ALPN protocol "postgresql".
//  2. The first packet after negotiation is a CancelRequest (routed by
//     its key, see CancelKeys) or a StartupMessage, protocol 3.x.
//  3. The route: from the TLS server name under Domain, else the
//     tunnel_route startup parameter (removed before forwarding), else the
//     listener's default route. Then the route's allowlist, then the
//     backend. A failure at any step is a FATAL ErrorResponse.
//  4. The StartupMessage goes to the database; its answers come back
//     message by message until ReadyForQuery, with BackendKeyData replaced
//     by a key of the proxy's own. The client's messages go the other way
//     as they come, so any authentication exchange works; a client that
//     picks SCRAM channel binding over TLS that ends here is stopped with
//     an explanation (its binding is to the proxy's certificate, which the
//     database would refuse).
//  5. Raw relay.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
)

// PostgresALPN is PostgreSQL's ALPN protocol name, which PostgreSQL 17
// and later require for direct TLS.
const PostgresALPN = "postgresql"

// tlsRecordHandshake is the first byte of a TLS ClientHello record.
const tlsRecordHandshake = 0x16

// maxNegotiations bounds GSSENCRequest and SSLRequest before the startup
// packet (libpq sends at most one of each).
const maxNegotiations = 2

// cancelTimeout bounds forwarding one cancel request.
const cancelTimeout = 5 * time.Second

// Authentication request codes that matter here.
const (
	pgAuthSASL = 10
)

// scramPlus is the SASL mechanism that binds to the TLS channel.
const scramPlus = "SCRAM-SHA-256-PLUS"

var (
	errPgUnencryptedAfterSSL = errors.New("received unencrypted data after SSL request")
	errPgNegotiation         = errors.New("unexpected encryption negotiation request")
	errChannelBinding        = errors.New("client chose SCRAM channel binding")
	errPgBackend             = errors.New("database sent an invalid message")
)

// pgClient is a client connection in its startup phase.
type pgClient struct {
	raw    net.Conn // the TCP connection
	conn   net.Conn // raw, or TLS over it
	tls    bool     // TLS ends here
	sni    string   // the TLS server name, if any
	client netip.AddrPort
}

// fail sends e to the client and closes the connection.
func (c *pgClient) fail(e *pgError) {
	c.raw.SetWriteDeadline(time.Now().Add(refusalWriteTimeout))
	c.conn.Write(appendErrorResponse(nil, e))
	c.conn.Close()
}

func (l *Listener) servePostgres(ctx context.Context, raw net.Conn, client netip.AddrPort) {
	c := &pgClient{raw: raw, conn: raw, client: client}
	raw.SetDeadline(time.Now().Add(l.handshakeTimeout()))
	code, payload, err := l.pgNegotiate(ctx, c)
	if err != nil {
		l.log.Info("PostgreSQL client failed before startup", keyClient, client.String(), keyErr, err)
		if errors.Is(err, errPgUnencryptedAfterSSL) || errors.Is(err, errPgPacketLength) || errors.Is(err, errPgNegotiation) {
			c.fail(&pgError{Code: sqlstateProtocolViolation, Message: err.Error()})
			return
		}
		c.conn.Close()
		return
	}
	if code == pgCancelRequestCode {
		l.pgCancel(ctx, c, payload)
		c.conn.Close()
		return
	}
	if code>>16 != pgProtocolMajor {
		c.fail(&pgError{Code: sqlstateFeatureNotSupported,
			Message: fmt.Sprintf("unsupported frontend protocol %d.%d: the tunnel serves protocol 3", code>>16, code&0xffff)})
		return
	}
	sm, err := parseStartup(code, payload)
	if err != nil {
		c.fail(&pgError{Code: sqlstateProtocolViolation, Message: err.Error()})
		return
	}
	named, _ := sm.takeRoute()
	// A client that no route here would let in learns nothing of the
	// routes: not which names exist, nor the default's.
	if !l.anyAllows(client.Addr()) {
		l.log.Info("client not allowed", keyClient, client.String())
		c.fail(notAllowedError(client.Addr()))
		return
	}
	r, perr := l.pgRoute(c, named)
	if perr != nil {
		l.log.Info("session refused", keyRoute, named, keyClient, client.String(), keyReason, perr.Message)
		c.fail(perr)
		return
	}
	if !r.allows(client.Addr()) {
		l.log.Info("client not allowed", keyRoute, r.Name, keyClient, client.String())
		c.fail(notAllowedError(client.Addr()))
		return
	}
	b, err := l.Upstream.Dial(ctx, &Request{Route: r.Name, Client: client})
	if err != nil {
		l.logRefused(r.Name, client, err)
		c.fail(pgDialError(r.Name, err))
		return
	}
	// Without a route parameter taken out, encode gives back the client's
	// bytes exactly (3.x versions and _pq_ parameters included).
	key, err := l.pgStartup(c, b, r, sm.encode())
	if err != nil {
		if errors.Is(err, errChannelBinding) {
			c.fail(channelBindingError(r.Name))
		} else {
			c.conn.Close()
		}
		b.Close()
		l.log.Info("session ended during startup", keyRoute, r.Name, keyClient, client.String(), keyErr, err)
		return
	}
	if key.pid != 0 {
		defer l.Cancels.remove(key.pid)
	}
	b.Relay(ctx, c.conn)
}

// pgNegotiate answers GSSENCRequest and SSLRequest, starting TLS when asked,
// and returns the packet that follows them.
func (l *Listener) pgNegotiate(ctx context.Context, c *pgClient) (uint32, []byte, error) {
	var first [1]byte
	if _, err := io.ReadFull(c.raw, first[:]); err != nil {
		return 0, nil, err
	}
	if first[0] == tlsRecordHandshake {
		if l.tlsConf == nil {
			return 0, nil, errors.New("direct TLS, but the listener has no certificate")
		}
		if err := l.pgStartTLS(ctx, c, first[:]); err != nil {
			return 0, nil, err
		}
		return readStartupPacket(c.conn, nil)
	}
	code, payload, err := readStartupPacket(c.raw, first[:])
	for n := 0; err == nil; n++ {
		var answer byte
		switch code {
		case pgSSLRequestCode:
			answer = 'N'
			if l.tlsConf != nil && !c.tls {
				answer = 'S'
			}
		case pgGSSENCRequestCode:
			answer = 'N'
		default:
			return code, payload, nil
		}
		if n == maxNegotiations || len(payload) != 0 {
			return 0, nil, errPgNegotiation
		}
		if answer == 'S' && UnreadBytes(c.raw) {
			return 0, nil, errPgUnencryptedAfterSSL
		}
		if _, err := c.conn.Write([]byte{answer}); err != nil {
			return 0, nil, err
		}
		if answer == 'S' {
			if err := l.pgStartTLS(ctx, c, nil); err != nil {
				return 0, nil, err
			}
		}
		code, payload, err = readStartupPacket(c.conn, nil)
	}
	return 0, nil, err
}

// pgStartTLS runs the TLS handshake on c, after the bytes in early that were
// already read from it.
func (l *Listener) pgStartTLS(ctx context.Context, c *pgClient, early []byte) error {
	var conn net.Conn = c.raw
	if len(early) > 0 {
		conn = &prefixConn{Conn: c.raw, prefix: early}
	}
	tc := tls.Server(conn, l.tlsConf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	st := tc.ConnectionState()
	c.conn, c.tls, c.sni = tc, true, st.ServerName
	if len(early) > 0 && st.NegotiatedProtocol != PostgresALPN {
		// PostgreSQL refuses direct TLS without ALPN, so as not to be
		// confused with another protocol's TLS.
		c.fail(&pgError{Code: sqlstateProtocolViolation,
			Message: "direct TLS connection without the ALPN protocol \"postgresql\""})
		return errors.New("direct TLS without ALPN")
	}
	return nil
}

// pgRoute picks the route for a client: the TLS server name, else the route
// named in the startup packet, else the default.
func (l *Listener) pgRoute(c *pgClient, named string) (Route, *pgError) {
	how := "the connection parameter " + RouteParameter
	if name, ok := RouteFromServerName(c.sni, l.Domain); ok {
		named, how = name, "the host name "+c.sni
	}
	if named != "" {
		if r, ok := l.lookup(named); ok {
			return r, nil
		}
		return Route{}, &pgError{Code: sqlstateInvalidCatalogName,
			Message: fmt.Sprintf("no route %q on this port (from %s)", named, how),
			Hint:    "Check the route name with the tunnel's operator."}
	}
	if r, ok := l.defaultRoute(); ok {
		return r, nil
	}
	hint := fmt.Sprintf("Add options=%s=ROUTE to the connection string", RouteParameter)
	if l.Domain != "" && l.tlsConf != nil {
		hint = fmt.Sprintf("Connect with TLS to ROUTE.%s, or add options=%s=ROUTE to the connection string", l.Domain, RouteParameter)
	}
	return Route{}, &pgError{Code: sqlstateInvalidCatalogName,
		Message: "this port serves several routes and the connection names none",
		Hint:    hint + "."}
}

// notAllowedError refuses a client by its address, naming no route.
func notAllowedError(a netip.Addr) *pgError {
	return &pgError{Code: sqlstateInvalidAuthSpec, Message: notAllowedMessage(a),
		Hint: "Ask the tunnel's operator to allow your address."}
}

// pgDialError tells a client why its route's backend could not be opened.
func pgDialError(route string, err error) *pgError {
	var re *RouteError
	if !errors.As(err, &re) {
		return &pgError{Code: sqlstateConnectionFailure, Message: fmt.Sprintf("route %q cannot be served: %v", route, err)}
	}
	e := &pgError{Code: sqlstateConnectionFailure, Message: re.messageFor(route)}
	switch re.Code {
	case ErrUnknownRoute:
		e.Code = sqlstateInvalidCatalogName
	case ErrAgentOffline:
		e.Hint = "The tunnel agent in the database's network is not connected; check that it runs and can reach the tunnel server."
	case ErrUnknownTarget:
		e.Hint = "The agent's configuration must declare the route's target."
	case ErrDialFailed:
		e.Hint = "The agent is connected but could not reach the database; check the database and the target address in the agent's configuration."
	case ErrLimitReached:
		e.Code = sqlstateTooManyConnections
	case ErrForbidden:
		e.Code = sqlstateInvalidAuthSpec
	}
	return e
}

// channelBindingError explains why SCRAM channel binding cannot work here.
func channelBindingError(route string) *pgError {
	return &pgError{Code: sqlstateInvalidAuthSpec,
		Message: fmt.Sprintf("route %q: SCRAM channel binding cannot pass through the tunnel", route),
		Detail: "The client's TLS connection ends at the tunnel server, so its channel binding names the tunnel's certificate; " +
			"the database, which has TLS of its own with the agent, would refuse it.",
		Hint: "Connect with channel_binding=disable (or prefer without TLS), or have the agent's target use tls = \"disable\"."}
}

// pgStartup sends the startup packet to the backend and relays the startup
// phase until the database is ready for queries. It returns the cancel key
// the client was given (zero if none).
func (l *Listener) pgStartup(c *pgClient, b Backend, r Route, startup []byte) (cancelRequest, error) {
	deadline := time.Now().Add(l.handshakeTimeout())
	c.raw.SetDeadline(deadline)
	b.SetDeadline(deadline)
	if _, err := b.Write(startup); err != nil {
		return cancelRequest{}, err
	}
	fe := &pgFrontendCopy{c: c, b: b, done: make(chan struct{})}
	go fe.run()

	key, err := l.pgBackendStartup(c, b, r, fe)
	// Stop the client's side at once: it is reading from the client.
	c.raw.SetReadDeadline(time.Unix(1, 0))
	<-fe.done
	var we *backendWriteError
	if err == nil && fe.err != nil && (!isTimeout(fe.err) || errors.As(fe.err, &we)) {
		// Only a read stopped by the deadline above is expected.
		err = fe.err
	}
	if errors.Is(fe.err, errChannelBinding) {
		err = errChannelBinding
	}
	if err == nil && len(fe.pending) > 0 {
		_, err = b.Write(fe.pending)
	}
	if err != nil {
		if key.pid != 0 {
			l.Cancels.remove(key.pid)
		}
		return cancelRequest{}, err
	}
	c.raw.SetDeadline(time.Time{})
	b.SetDeadline(time.Time{})
	return key, nil
}

// pgBackendStartup copies the database's messages to the client until
// ReadyForQuery, replacing BackendKeyData.
func (l *Listener) pgBackendStartup(c *pgClient, b Backend, r Route, fe *pgFrontendCopy) (key cancelRequest, err error) {
	br := bufio.NewReaderSize(b, 4096)
	bw := bufio.NewWriterSize(c.conn, 4096)
	var hdr [5]byte
	for {
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return key, err
			}
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return key, fmt.Errorf("read from database: %w", err)
		}
		typ, n := hdr[0], int(binary.BigEndian.Uint32(hdr[1:]))-4
		if n < 0 {
			return key, errPgBackend
		}
		switch typ {
		case 'K':
			body, err := readBody(br, n, 4+pgMaxCancelKeyLen)
			if err != nil {
				return key, err
			}
			real, err := parseBackendKeyData(body)
			if err != nil {
				return key, fmt.Errorf("%w: %v", errPgBackend, err)
			}
			if key.pid != 0 {
				l.Cancels.remove(key.pid)
			}
			key = l.Cancels.add(real, b, r)
			bw.Write(appendBackendKeyData(nil, key))
			continue
		case 'R':
			body, err := readBody(br, n, pgMaxAuthMessageLen)
			if err != nil {
				return key, err
			}
			if len(body) >= 4 && binary.BigEndian.Uint32(body) == pgAuthSASL {
				if c.tls {
					// Before the client can see it and answer.
					fe.saslOffered.Store(true)
				} else if stripped, ok := withoutMechanism(body[4:], scramPlus); ok {
					// The database offers binding because the agent's leg
					// has TLS; a client without TLS must not be offered
					// it (libpq refuses such an offer outright).
					body = append(body[:4], stripped...)
					binary.BigEndian.PutUint32(hdr[1:], uint32(4+len(body)))
				}
			}
			bw.Write(hdr[:])
			bw.Write(body)
			continue
		}
		bw.Write(hdr[:])
		if _, err := io.CopyN(bw, br, int64(n)); err != nil {
			return key, fmt.Errorf("read from database: %w", err)
		}
		switch typ {
		case 'Z': // ReadyForQuery
			if k := br.Buffered(); k > 0 {
				p, _ := br.Peek(k)
				bw.Write(p)
			}
			return key, bw.Flush()
		case 'E': // the database refused the client; it closes next
			bw.Flush()
			return key, errors.New("the database refused the connection")
		}
	}
}

// withoutMechanism returns the SASL mechanism list of an
// AuthenticationSASL message (NUL-terminated names ending in an empty one)
// without mech, if mech was there and others are left.
func withoutMechanism(list []byte, mech string) ([]byte, bool) {
	var kept []byte
	found, others := false, 0
	for p := list; ; {
		name, rest, ok := cutCString(p)
		if !ok {
			return nil, false
		}
		if name == "" {
			break
		}
		if name == mech {
			found = true
		} else {
			kept = append(append(kept, name...), 0)
			others++
		}
		p = rest
	}
	if !found || others == 0 {
		return nil, false
	}
	return append(kept, 0), true
}

func readBody(r io.Reader, n, limit int) ([]byte, error) {
	if n > limit {
		return nil, fmt.Errorf("%w: message of %d bytes", errPgBackend, n)
	}
	body := make([]byte, n)
	_, err := io.ReadFull(r, body)
	return body, err
}

// pgFrontendCopy copies the client's messages to the backend during the
// startup phase, until the client's read deadline stops it. What it read
// but could not forward whole when stopped is left in pending.
type pgFrontendCopy struct {
	c           *pgClient
	b           Backend
	saslOffered atomic.Bool // set when the database offers SASL to a TLS client
	done        chan struct{}
	pending     []byte // read from the client, not yet sent
	err         error  // why it stopped
}

func (f *pgFrontendCopy) run() {
	defer close(f.done)
	// However the copy stops, the database side must not wait for an
	// answer that will not come (a client that leaves when asked for a
	// password it lacks, say).
	defer f.b.SetReadDeadline(time.Unix(1, 0))
	var hdr [5]byte
	for {
		n, err := io.ReadFull(f.c.conn, hdr[:])
		if err != nil {
			f.pending, f.err = hdr[:n], err
			return
		}
		typ, size := hdr[0], int(binary.BigEndian.Uint32(hdr[1:]))-4
		if size < 0 {
			f.err = errors.New("client sent an invalid message")
			return
		}
		if typ == 'p' && size <= pgMaxAuthMessageLen {
			msg := make([]byte, 5+size)
			copy(msg, hdr[:])
			n, err := io.ReadFull(f.c.conn, msg[5:])
			if err != nil {
				f.pending, f.err = msg[:5+n], err
				return
			}
			if f.saslOffered.Swap(false) && saslMechanism(msg[5:]) == scramPlus {
				f.err = errChannelBinding
				return
			}
			if _, err := f.b.Write(msg); err != nil {
				f.err = &backendWriteError{err}
				return
			}
			continue
		}
		// Anything else passes as it comes; once a byte is read it is
		// sent, so a stop while reading leaves nothing behind.
		if _, err := f.b.Write(hdr[:]); err != nil {
			f.err = &backendWriteError{err}
			return
		}
		if err := f.copyBody(size); err != nil {
			f.err = err
			return
		}
	}
}

// copyBody copies n bytes of a message from the client to the backend. A
// failed write is a backendWriteError: what was read is lost with it.
func (f *pgFrontendCopy) copyBody(n int) error {
	var buf [4096]byte
	for n > 0 {
		k, err := f.c.conn.Read(buf[:min(n, len(buf))])
		if k > 0 {
			if _, werr := f.b.Write(buf[:k]); werr != nil {
				return &backendWriteError{werr}
			}
			n -= k
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// backendWriteError is a failed write to the backend during the startup
// phase. Unlike a stopped read, which loses nothing, it always ends the
// session: the stream is no longer whole.
type backendWriteError struct{ err error }

func (e *backendWriteError) Error() string { return "write to database: " + e.err.Error() }
func (e *backendWriteError) Unwrap() error { return e.err }

// pgCancel forwards a client's CancelRequest to the session it names, with
// the database's own key, through the same agent to the same target. A
// request that names no live session is dropped, as PostgreSQL does.
func (l *Listener) pgCancel(ctx context.Context, c *pgClient, payload []byte) {
	req, err := parseCancel(payload)
	if err != nil {
		l.log.Info("bad cancel request", keyClient, c.client.String(), keyErr, err)
		return
	}
	e, ok := l.Cancels.lookup(req)
	if !ok {
		l.log.Info("cancel request for no live session", keyClient, c.client.String())
		return
	}
	if !e.route.allows(c.client.Addr()) {
		l.log.Info("cancel request from a client not allowed", keyRoute, e.route.Name, keyClient, c.client.String())
		return
	}
	// One at a time: a key can never open more than one extra
	// connection to the database, whatever the client sends.
	if !e.busy.CompareAndSwap(false, true) {
		l.log.Info("cancel request dropped: another is on its way", keyRoute, e.route.Name, keyClient, c.client.String())
		return
	}
	defer e.busy.Store(false)
	ctx, cancel := context.WithTimeout(ctx, cancelTimeout)
	defer cancel()
	conn, err := e.backend.Sibling(ctx)
	if err != nil {
		l.log.Warn("cancel request not forwarded", keyRoute, e.route.Name, keyClient, c.client.String(), keyErr, err)
		return
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	if _, err := conn.Write(e.real.encode()); err != nil {
		l.log.Warn("cancel request not forwarded", keyRoute, e.route.Name, keyErr, err)
		return
	}
	// The database closes the connection once it has acted on it; the
	// client waits for its own connection to close likewise.
	io.Copy(io.Discard, conn)
	l.log.Info("cancel request forwarded", keyRoute, e.route.Name, keyClient, c.client.String())
}

// RouteFromServerName returns the route a TLS server name picks: its first
// label, when the name is under domain (compared without case and trailing
// dots). A name that is the domain itself, or not under it, picks none.
func RouteFromServerName(name, domain string) (string, bool) {
	name = strings.TrimSuffix(name, ".")
	domain = strings.TrimPrefix(strings.TrimSuffix(domain, "."), ".")
	if name == "" || domain == "" || len(name) <= len(domain)+1 {
		return "", false
	}
	suffix := name[len(name)-len(domain):]
	if name[len(name)-len(domain)-1] != '.' || !strings.EqualFold(suffix, domain) {
		return "", false
	}
	label, _, _ := strings.Cut(name[:len(name)-len(domain)-1], ".")
	if label == "" {
		return "", false
	}
	return label, true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
