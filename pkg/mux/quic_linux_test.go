//go:build linux

package mux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// groPair returns a receiving socket with receive offload and a sender
// whose packets carry ECT(0), as quic-go marks its own.
func groPair(t *testing.T) (rcv *groConn, snd *net.UDPConn) {
	t.Helper()
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	rcv, ok := quicPacketConn(udp).(*groConn)
	if !ok {
		t.Skip("no UDP_GRO in this kernel")
	}
	setsockopt(t, udp, unix.IPPROTO_IP, unix.IP_RECVTOS, 1)
	return rcv, ectSender(t)
}

// ectSender returns a socket whose packets carry ECT(0).
func ectSender(t *testing.T) *net.UDPConn {
	t.Helper()
	snd, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snd.Close() })
	setsockopt(t, snd, unix.IPPROTO_IP, unix.IP_TOS, 2)
	return snd
}

func setsockopt(t *testing.T, c *net.UDPConn, level, opt, value int) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, value) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
}

// udpSegmentOOB asks the kernel to send a buffer as datagrams of size
// bytes each (GSO), as quic-go does.
func udpSegmentOOB(size uint16) []byte {
	b := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], size)
	return b
}

// quicMessages are messages laid out as quic-go lays out its batch.
func quicMessages(n int) []ipv4.Message {
	ms := make([]ipv4.Message, n)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 1452)}
		ms[i].OOB = make([]byte, 128)
	}
	return ms
}

// controlMessages lists the (level, type) of each control message in oob,
// with the first byte of its data.
func controlMessages(t *testing.T, oob []byte) [][3]int {
	t.Helper()
	var out [][3]int
	for len(oob) > 0 {
		hdr, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			t.Fatalf("control messages: %v", err)
		}
		first := -1
		if len(data) > 0 {
			first = int(data[0])
		}
		out = append(out, [3]int{int(hdr.Level), int(hdr.Type), first})
		oob = rest
	}
	return out
}

// TestGROConnSplitsCoalescedDatagram: a GSO batch arrives in one read and
// leaves as one packet per message, each with the batch's ECN marking and
// sender; a plain datagram from another sender passes as it is.
func TestGROConnSplitsCoalescedDatagram(t *testing.T) {
	rcv, snd := groPair(t)
	other := ectSender(t)
	payload := make([]byte, 3500)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	if _, _, err := snd.WriteMsgUDP(payload, udpSegmentOOB(1200), rcv.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Skipf("no GSO here: %v", err)
	}
	if _, err := other.WriteToUDP([]byte("plain"), rcv.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Fatal(err)
	}
	rcv.SetReadDeadline(time.Now().Add(5 * time.Second))

	type packet struct {
		data []byte
		oob  [][3]int
		from string
	}
	var got []packet
	var batches []int
	for len(got) < 4 {
		ms := quicMessages(2)
		n, err := rcv.ReadBatch(ms, 0)
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, n)
		for _, m := range ms[:n] {
			got = append(got, packet{
				data: bytes.Clone(m.Buffers[0][:m.N]),
				oob:  controlMessages(t, m.OOB[:m.NN]),
				from: m.Addr.String(),
			})
		}
		if len(batches) == 1 && len(rcv.pending) != 1100 {
			// The kernel split the batch itself: UDP_GRO is not in effect.
			t.Fatalf("after the first read, %d bytes wait in the buffer, want 1100", len(rcv.pending))
		}
	}
	if want := []int{2, 1, 1}; !slices.Equal(batches, want) {
		t.Errorf("batch sizes %v, want %v", batches, want)
	}
	want := [][]byte{payload[:1200], payload[1200:2400], payload[2400:], []byte("plain")}
	from := []net.Addr{snd.LocalAddr(), snd.LocalAddr(), snd.LocalAddr(), other.LocalAddr()}
	ecn := [3]int{unix.IPPROTO_IP, unix.IP_TOS, 2}
	for i, p := range got {
		if !bytes.Equal(p.data, want[i]) {
			t.Errorf("packet %d: %d bytes, not the %d sent", i, len(p.data), len(want[i]))
		}
		if len(p.oob) != 1 || p.oob[0] != ecn {
			t.Errorf("packet %d: control messages %v, want only the ECN marking %v", i, p.oob, ecn)
		}
		if p.from != from[i].String() {
			t.Errorf("packet %d from %s, want %s", i, p.from, from[i])
		}
	}
}

// TestGROConnBatchesSmallDatagrams: datagrams queued together are read
// several at a time, and each still comes out whole, in order, from its
// own sender.
func TestGROConnBatchesSmallDatagrams(t *testing.T) {
	rcv, snd := groPair(t)
	other := ectSender(t)
	const count = 7
	for i := range count {
		from := snd
		if i%2 == 1 {
			from = other
		}
		if _, err := from.WriteToUDP([]byte{byte(i), 'x'}, rcv.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
	}
	rcv.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range count {
		ms := quicMessages(1)
		if n, err := rcv.ReadBatch(ms, 0); err != nil || n != 1 {
			t.Fatalf("datagram %d: %d messages, %v", i, n, err)
		}
		want := snd.LocalAddr().String()
		if i%2 == 1 {
			want = other.LocalAddr().String()
		}
		if got := ms[0].Buffers[0][:ms[0].N]; !bytes.Equal(got, []byte{byte(i), 'x'}) || ms[0].Addr.String() != want {
			t.Fatalf("datagram %d: %q from %s, want %q from %s", i, got, ms[0].Addr, []byte{byte(i), 'x'}, want)
		}
	}
	if len(rcv.msgs) < 2 || len(rcv.msgs) > groMaxBatch {
		t.Errorf("reads take %d datagrams at most, want between 2 and %d", len(rcv.msgs), groMaxBatch)
	}
}

// TestGROConnDeadline: a read deadline ends ReadBatch as it ends a plain
// read; quic-go relies on it to stop its read loop.
func TestGROConnDeadline(t *testing.T) {
	rcv, _ := groPair(t)
	rcv.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := rcv.ReadBatch(quicMessages(8), 0)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadBatch after the deadline: %v", err)
	}
}

// TestCopyControlKeepsWholeMessages: control messages that do not fit are
// left out whole, never cut, since quic-go fails a read on a cut one.
func TestCopyControlKeepsWholeMessages(t *testing.T) {
	one := unix.UnixRights(1)
	two := append(bytes.Clone(one), unix.UnixRights(2, 3)...)
	for _, tc := range []struct {
		name string
		dst  int
		want int
	}{
		{"all fit", len(two), len(two)},
		{"first fits", len(two) - 1, len(one)},
		{"none fits", len(one) - 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := copyControl(make([]byte, tc.dst), two); got != tc.want {
				t.Fatalf("copied %d bytes, want %d", got, tc.want)
			}
		})
	}
}

// TestQUICSocketsUseGRO: both the listener's socket and a dialed one read
// with receive offload.
func TestQUICSocketsUseGRO(t *testing.T) {
	groPair(t) // skips where the kernel has no UDP_GRO
	_, _, ln := quicPair(t, testConfig())
	if _, ok := ln.tr.Conn.(*groConn); !ok {
		t.Errorf("listener reads from %T, not a *groConn", ln.tr.Conn)
	}
	pc, err := net.ListenUDP("udp4", nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := newQUICTransport(pc, nil)
	defer pc.Close()
	if _, ok := tr.Conn.(*groConn); !ok {
		t.Errorf("dialer reads from %T, not a *groConn", tr.Conn)
	}
}
