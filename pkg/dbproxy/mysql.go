package dbproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// MySQL speaks first: the server greets, the client answers. A route that
// cannot be served is told to the client by sending, in place of the
// greeting, an ERR packet (sequence id 0), which MySQL and MariaDB clients
// print as "ERROR code (sqlstate): message". Once the backend is open its
// database greets the client itself, and the bytes are relayed untouched.

// MySQL error codes and SQLSTATEs the front door sends.
const (
	mysqlErUnknownError      = 1105 // ER_UNKNOWN_ERROR
	mysqlErConCount          = 1040 // ER_CON_COUNT_ERROR, "Too many connections"
	mysqlErHostNotPrivileged = 1130 // ER_HOST_NOT_PRIVILEGED
	mysqlStateConnFailure    = "08S01"
	mysqlStateConnRejected   = "08004"
	mysqlStateGeneral        = "HY000"
)

// ERR packet layout and bounds.
const (
	mysqlPacketHeaderLen      = 4    // 3-byte length, sequence id
	mysqlErrHeader       byte = 0xff // first payload byte of an ERR packet
	mysqlMaxErrMessage        = 512  // bytes of message kept
)

// refusalWriteTimeout bounds writing an error to a client that is refused.
const refusalWriteTimeout = 5 * time.Second

// appendMySQLErr appends an ERR packet with sequence id 0.
func appendMySQLErr(b []byte, code uint16, state, msg string) []byte {
	if len(msg) > mysqlMaxErrMessage {
		msg = truncateUTF8(msg, mysqlMaxErrMessage)
	}
	start := len(b)
	b = append(b, 0, 0, 0, 0) // length (3 bytes) and sequence id
	b = append(b, mysqlErrHeader)
	b = binary.LittleEndian.AppendUint16(b, code)
	if len(state) != 5 {
		state = mysqlStateGeneral
	}
	b = append(b, '#')
	b = append(b, state...)
	b = append(b, msg...)
	n := len(b) - start - mysqlPacketHeaderLen
	b[start], b[start+1], b[start+2] = byte(n), byte(n>>8), byte(n>>16)
	return b
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}

func (l *Listener) serveMySQL(ctx context.Context, conn net.Conn, client netip.AddrPort) {
	r, ok := l.onlyRoute()
	var err error
	switch {
	case !ok:
		err = &RouteError{Code: ErrUnknownRoute, Reason: "this port serves no route"}
	case !r.allows(client.Addr()):
		err = &RouteError{Code: ErrForbidden, Reason: notAllowedMessage(client.Addr())}
	}
	var b Backend
	if err == nil {
		b, err = l.Upstream.Dial(ctx, &Request{Route: r.Name, Client: client})
	}
	if err != nil {
		l.logRefused(r.Name, client, err)
		code, state, msg := mysqlError(r.Name, err)
		conn.SetWriteDeadline(time.Now().Add(refusalWriteTimeout))
		conn.Write(appendMySQLErr(nil, code, state, msg))
		conn.Close()
		return
	}
	b.Relay(ctx, conn)
}

// mysqlError says why a route could not be served, as an ERR packet's code,
// SQLSTATE and message.
func mysqlError(route string, err error) (uint16, string, string) {
	var re *RouteError
	if !errors.As(err, &re) {
		return mysqlErUnknownError, mysqlStateConnFailure, fmt.Sprintf("tunnel: route %q cannot be served: %v", route, err)
	}
	msg := "tunnel: " + re.messageFor(route)
	switch re.Code {
	case ErrForbidden:
		// Naming no route to a client that may not use it.
		return mysqlErHostNotPrivileged, mysqlStateGeneral, "tunnel: " + re.Reason
	case ErrLimitReached:
		return mysqlErConCount, mysqlStateConnRejected, msg
	}
	return mysqlErUnknownError, mysqlStateConnFailure, msg
}
