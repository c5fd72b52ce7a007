package mux

import (
	"bytes"
	"testing"
)

// recordWriter stands in for the TLS connection: it cuts every write into
// records of at most 16 KiB and writes each on its own, as crypto/tls does.
type recordWriter struct {
	recorder
	out *corkConn
}

func (w *recordWriter) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		n := min(len(rest), tlsRecordPayload)
		if _, err := w.out.Write(rest[:n]); err != nil {
			return 0, err
		}
		rest = rest[n:]
	}
	return len(p), nil
}

// TestCorkOneWritePerFrame: a frame that spans many records reaches the TCP
// connection in one write, with every byte in order; writes outside a frame
// (a handshake, an alert) pass straight through.
func TestCorkOneWritePerFrame(t *testing.T) {
	tcp := &recorder{}
	cork := &corkConn{Conn: tcp}
	tlsConn := &recordWriter{out: cork}
	fc := &frameConn{Conn: tlsConn, raw: cork}

	body := make([]byte, 200<<10)
	for i := range body {
		body[i] = byte(i)
	}
	hdr := []byte{0, yamuxTypeData, 0, 0, 0, 0, 0, 1, 0, 3, 32, 0} // length 200 KiB
	if _, err := fc.Write(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.Write(body); err != nil {
		t.Fatal(err)
	}
	if len(tcp.writes) != 1 {
		t.Fatalf("%d writes reached TCP, want 1", len(tcp.writes))
	}
	if want := append(append([]byte{}, hdr...), body...); !bytes.Equal(tcp.writes[0], want) {
		t.Fatal("the write differs from header and body in order")
	}

	if _, err := cork.Write([]byte("alert")); err != nil {
		t.Fatal(err)
	}
	if len(tcp.writes) != 2 || string(tcp.writes[1]) != "alert" {
		t.Fatalf("an uncorked write did not pass straight through: %d writes", len(tcp.writes))
	}
	if cork.buf != nil {
		t.Fatal("the cork keeps its buffer after a flush")
	}
}
