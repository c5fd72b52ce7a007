package mux

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestQUICResetAfterServerRestart: a server that died without a word and
// came back on the same port with the same key answers the old
// connection's next packet with a stateless reset, and the client's session
// ends at once instead of after its idle timeout.
func TestQUICResetAfterServerRestart(t *testing.T) {
	stls, ctls := testTLS(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	ln, err := NewQUICListener(pc, stls, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, err := DialQUIC(ctx, addr, ctls, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}

	// The crash: the socket goes away under the server, nothing is sent.
	pc.Close()
	<-server.Done()
	ln.Close()

	pc2, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := NewQUICListener(pc2, stls, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()

	start := time.Now()
	// The client's next packet, large enough to be answered with a reset.
	st.Write(make([]byte, 200))
	select {
	case <-client.Done():
		t.Logf("client session ended %v after its first packet to the new server", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the client's session outlived the restart by 5s: no stateless reset")
	}
}
