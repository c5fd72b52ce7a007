// Package proto is the tunnel protocol spoken between tunnel-agent and
// tunnel-server inside a mux.Session. docs/PROTOCOL.md describes the same
// bytes for people; keep the two in step.
//
// Protocol flow:
//
//  1. The agent connects (TLS 1.3 + yamux, or QUIC) and authenticates with
//     its client certificate; the server with its own.
//  2. The agent opens the first stream, the control stream, and sends Hello:
//     protocol version, agent version, declared target names, instance.
//  3. The server answers Welcome (with the heartbeat timing) or Refuse (with
//     a code and a message). After Refuse the server waits up to 2 seconds
//     for the agent to hang up, then closes the connection. Nothing else
//     happens before Welcome: no data stream is opened for an agent that has
//     not been welcomed.
//  4. An agent has one live connection per server. When a second one
//     arrives from the same agent process (equal Hello instance), it
//     replaces the old one at once: new sessions go to it, and the old one
//     is closed once the sessions it carries have ended. From another
//     process, the server pings the old one and the new one replaces it
//     only if the old one does not answer within the liveness timeout
//     (default 2 seconds), and is refused with already_connected otherwise.
//  5. While the connection lives each side sends Ping on the control stream
//     every heartbeat interval and the other answers Pong. Each side gives up
//     on the connection when no byte at all has arrived on it for the
//     heartbeat timeout: pings keep an idle connection talking, and under
//     load the data itself proves the peer alive. The server may send Refuse
//     at any time, when the agent is removed or disabled, and closes the
//     connection once the agent hangs up, or after 2 seconds.
//  6. For every client connection the server opens a data stream and sends
//     Open (session id, target name, client address, route name). The agent
//     checks the target against its own config, dials it, and answers Reply:
//     OK, or an error code with a reason. After Reply OK the stream carries
//     the client's bytes both ways until each side closes its write
//     direction.
//
// Framing: every message is a frame
//
//	type    uint8
//	length  uint16, big endian: the payload length
//	payload [length]byte
//
// Readers refuse a length above their limit before reading the payload.
// Control messages (Hello, Welcome, Refuse) carry JSON objects; a reader
// ignores fields it does not know, so newer peers may add fields. Ping, Pong,
// Open and Reply are binary; a reader ignores bytes after the fields it
// knows, so newer peers may append fields.
package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the protocol version this code speaks.
//
// Version log:
//
//	1: Hello/Welcome/Refuse, Ping/Pong heartbeats, Open/Reply data streams.
//	2: Reconnect, Draining, Targets, RotateKey, NewKey, KeyAccepted on the
//	   control stream; Enroll/Enrolled in place of Hello/Welcome.
const Version = 2

// MinVersion is the oldest protocol version this code still accepts.
const MinVersion = 1

// FrameType identifies a frame.
type FrameType uint8

const (
	// FrameHello opens the control stream, agent to server. JSON Hello.
	FrameHello FrameType = 0x01
	// FrameWelcome accepts the agent, server to agent. JSON Welcome.
	FrameWelcome FrameType = 0x02
	// FrameRefuse refuses the agent, server to agent. JSON Refuse.
	FrameRefuse FrameType = 0x03
	// FramePing is a heartbeat, either way: sequence uint64 (big endian).
	FramePing FrameType = 0x04
	// FramePong answers a Ping with the same 8-byte sequence.
	FramePong FrameType = 0x05
	// FrameReconnect asks the agent to open a new connection, server to
	// agent (version 2). JSON Reconnect. The server takes no new sessions
	// on this connection; the ones it carries finish on it.
	FrameReconnect FrameType = 0x06
	// FrameDraining says the agent is stopping, agent to server (version
	// 2). JSON Draining. The server opens no new data stream on this
	// connection; the ones open finish.
	FrameDraining FrameType = 0x07
	// FrameTargets replaces the agent's declared target names after it
	// re-read its config, agent to server (version 2). JSON Targets.
	FrameTargets FrameType = 0x08
	// FrameRotateKey asks the agent to make a new key, server to agent
	// (version 2). JSON RotateKey.
	FrameRotateKey FrameType = 0x09
	// FrameNewKey announces the agent's next key, agent to server (version
	// 2). JSON NewKey.
	FrameNewKey FrameType = 0x0a
	// FrameKeyAccepted answers NewKey, server to agent (version 2). JSON
	// KeyAccepted.
	FrameKeyAccepted FrameType = 0x0b
	// FrameEnroll is the first frame of an enrolling agent's control
	// stream, in place of Hello (version 2). JSON Enroll.
	FrameEnroll FrameType = 0x0c
	// FrameEnrolled answers Enroll, server to agent (version 2). JSON
	// Enrolled. The server then closes the connection.
	FrameEnrolled FrameType = 0x0d
	// FrameOpen starts a data stream, server to agent:
	//
	//	session id     uint64
	//	target length  uint8, then the target name
	//	client length  uint8, then the client address ("ip:port")
	//	route length   uint8, then the route name
	FrameOpen FrameType = 0x10
	// FrameReply answers Open, agent to server:
	//
	//	code     uint8 (ReplyCode)
	//	message  the rest of the payload, UTF-8: the reason, for errors
	FrameReply FrameType = 0x11
)

func (t FrameType) String() string {
	switch t {
	case FrameHello:
		return "hello"
	case FrameWelcome:
		return "welcome"
	case FrameRefuse:
		return "refuse"
	case FramePing:
		return "ping"
	case FramePong:
		return "pong"
	case FrameReconnect:
		return "reconnect"
	case FrameDraining:
		return "draining"
	case FrameTargets:
		return "targets"
	case FrameRotateKey:
		return "rotate key"
	case FrameNewKey:
		return "new key"
	case FrameKeyAccepted:
		return "key accepted"
	case FrameEnroll:
		return "enroll"
	case FrameEnrolled:
		return "enrolled"
	case FrameOpen:
		return "open"
	case FrameReply:
		return "reply"
	}
	return fmt.Sprintf("frame(0x%02x)", uint8(t))
}

const headerLen = 3

// MaxPayload is the largest payload the framing can carry.
const MaxPayload = 0xffff

var (
	// ErrFrameTooLarge is returned for a frame longer than the reader allows.
	ErrFrameTooLarge = errors.New("proto: frame too large")
	// ErrMalformed is returned for a payload that does not parse.
	ErrMalformed = errors.New("proto: malformed frame")
	// ErrUnexpected is returned for a frame of the wrong type at that point.
	ErrUnexpected = errors.New("proto: unexpected frame")
)

// AppendFrame appends a frame to b.
func AppendFrame(b []byte, t FrameType, payload []byte) ([]byte, error) {
	if len(payload) > MaxPayload {
		return b, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(payload))
	}
	b = append(b, byte(t), byte(len(payload)>>8), byte(len(payload)))
	return append(b, payload...), nil
}

// WriteFrame writes one frame in a single Write.
func WriteFrame(w io.Writer, t FrameType, payload []byte) error {
	buf, err := AppendFrame(make([]byte, 0, headerLen+len(payload)), t, payload)
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

// ReadFrame reads exactly one frame from r, never more bytes than it
// declares, so the bytes that follow stay in r. A payload longer than max is
// refused before it is read.
func ReadFrame(r io.Reader, max int) (FrameType, []byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	t := FrameType(hdr[0])
	n := int(binary.BigEndian.Uint16(hdr[1:]))
	if n > max {
		return t, nil, fmt.Errorf("%w: %s frame of %d bytes, limit %d", ErrFrameTooLarge, t, n, max)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return t, nil, err
	}
	return t, payload, nil
}
