package mux

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// connectRequest is what a scripted proxy saw.
type connectRequest struct {
	method, target, auth string
}

// scriptedProxy serves an HTTP proxy on loopback (over TLS when tlsConf is
// set) whose every connection is handled by answer, after the request has
// been read. It returns the proxy's URL, with user info when user is set,
// and the requests seen.
func scriptedProxy(t *testing.T, tlsConf *tls.Config, user *url.Userinfo, answer func(req *http.Request, c net.Conn)) (*url.URL, <-chan connectRequest) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	seen := make(chan connectRequest, 16)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				select {
				case seen <- connectRequest{req.Method, req.RequestURI, req.Header.Get("Proxy-Authorization")}:
				default:
				}
				if br.Buffered() > 0 {
					// The client must wait for the answer before it speaks.
					return
				}
				answer(req, c)
			}()
		}
	}()
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: ln.Addr().String(), User: user}, seen
}

// answerWith answers every CONNECT with raw and then holds the connection
// until the client closes it.
func answerWith(raw string) func(*http.Request, net.Conn) {
	return func(_ *http.Request, c net.Conn) {
		io.WriteString(c, raw)
		io.Copy(io.Discard, c)
	}
}

// forward is a working CONNECT proxy: it dials the requested target and
// splices.
func forward(req *http.Request, c net.Conn) {
	up, err := net.Dial("tcp", req.RequestURI)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer up.Close()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	c.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); close(done) }()
	io.Copy(c, up)
	c.Close()
	<-done
}

const (
	proxyUser     = "alice"
	proxyPassword = "s3cr3t-pw"
)

// TestHTTPProxyDialTLS: a session through a CONNECT proxy works end to end,
// and the proxy saw the target as written and the Basic credentials.
func TestHTTPProxyDialTLS(t *testing.T) {
	stls, ctls := testTLS(t)
	ln, err := ListenTLS("127.0.0.1:0", stls, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	proxy, seen := scriptedProxy(t, nil, url.UserPassword(proxyUser, proxyPassword), forward)
	cfg := testConfig()
	cfg.HandshakeTimeout = 5 * time.Second
	cfg.Dial = (&HTTPProxy{URL: proxy}).DialContext
	client, server := dialPair(t, ln, func(ctx context.Context) (Session, error) {
		return DialTLS(ctx, ln.Addr().String(), ctls, cfg)
	})
	req := <-seen
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(proxyUser+":"+proxyPassword))
	if req.method != http.MethodConnect || req.target != ln.Addr().String() || req.auth != wantAuth {
		t.Fatalf("proxy saw %+v, want CONNECT %s with %q", req, ln.Addr(), wantAuth)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Write([]byte("through the proxy")); err != nil {
		t.Fatal(err)
	}
	sst, err := server.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sst.Close()
	got := make([]byte, len("through the proxy"))
	sst.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(sst, got); err != nil || string(got) != "through the proxy" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// TestHTTPProxyErrors: every way a proxy can fail gives an error that says
// what to do, and never shows the password.
func TestHTTPProxyErrors(t *testing.T) {
	user := url.UserPassword(proxyUser, proxyPassword)
	const target = "tunnel.test:7443"
	tests := []struct {
		name string
		// proxy returns the proxy's URL.
		proxy func(t *testing.T) *url.URL
		want  []string
		// status is the ProxyError's code, 0 when the error is another.
		status int
	}{
		{
			name: "unreachable",
			proxy: func(t *testing.T) *url.URL {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				l.Close()
				return &url.URL{Scheme: "http", Host: l.Addr().String(), User: user}
			},
			want: []string{"unreachable", "connection refused", "alice:xxxxx@"},
		},
		{
			name: "407 without credentials",
			proxy: func(t *testing.T) *url.URL {
				u, _ := scriptedProxy(t, nil, nil, answerWith("HTTP/1.1 407 Proxy Authentication Required\r\n"+
					"Proxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\n\r\n"))
				return u
			},
			want:   []string{"requires authentication", "put user:password in the proxy URL", `"HTTP/1.1 407 Proxy Authentication Required"`},
			status: 407,
		},
		{
			name: "407 with wrong credentials",
			proxy: func(t *testing.T) *url.URL {
				u, _ := scriptedProxy(t, nil, user, answerWith("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"))
				return u
			},
			want:   []string{"rejected the user and password", "alice:xxxxx@"},
			status: 407,
		},
		{
			name: "403",
			proxy: func(t *testing.T) *url.URL {
				u, _ := scriptedProxy(t, nil, user, answerWith("HTTP/1.1 403 Forbidden by policy\r\nContent-Length: 5\r\n\r\nnope!"))
				return u
			},
			want:   []string{"refused CONNECT to " + target, `answered "HTTP/1.1 403 Forbidden by policy"`},
			status: 403,
		},
		{
			name: "closed without answer",
			proxy: func(t *testing.T) *url.URL {
				u, _ := scriptedProxy(t, nil, user, func(*http.Request, net.Conn) {})
				return u
			},
			want: []string{"closed the connection without answering CONNECT"},
		},
		{
			name: "not HTTP",
			proxy: func(t *testing.T) *url.URL {
				u, _ := scriptedProxy(t, nil, user, answerWith("SSH-2.0-OpenSSH_9.2\r\n"))
				return u
			},
			want: []string{"no valid answer to CONNECT"},
		},
		{
			name: "endless headers",
			proxy: func(t *testing.T) *url.URL {
				u, _ := scriptedProxy(t, nil, user, answerWith("HTTP/1.1 200 OK\r\n"+strings.Repeat("X-Pad: 0123456789abcdef\r\n", 2000)))
				return u
			},
			want: []string{"longer than 16384 bytes"},
		},
		{
			name: "silent",
			proxy: func(t *testing.T) *url.URL {
				u, _ := scriptedProxy(t, nil, user, func(_ *http.Request, c net.Conn) { io.Copy(io.Discard, c) })
				return u
			},
			want: []string{"no answer to CONNECT", "deadline exceeded"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			c, err := (&HTTPProxy{URL: tt.proxy(t)}).DialContext(ctx, "tcp", target)
			if err == nil {
				c.Close()
				t.Fatal("dial worked")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), proxyPassword) {
				t.Errorf("error %q shows the password", err)
			}
			var pe *ProxyError
			if got := errors.As(err, &pe); got != (tt.status != 0) || got && pe.StatusCode != tt.status {
				t.Errorf("error %#v, want a ProxyError with status %d", err, tt.status)
			}
		})
	}
}

// TestHTTPProxyEarlyBytes: bytes the proxy sends right after its answer,
// in the same segment, are the first the connection reads.
func TestHTTPProxyEarlyBytes(t *testing.T) {
	proxy, _ := scriptedProxy(t, nil, nil, func(_ *http.Request, c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\nearly bytes|")
		io.WriteString(c, "later bytes")
		io.Copy(io.Discard, c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := (&HTTPProxy{URL: proxy}).DialContext(ctx, "tcp", "tunnel.test:7443")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	want := "early bytes|later bytes"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// TestHTTPSProxy: an https proxy is reached over TLS, verified with the
// given roots, and refused when its certificate is not trusted.
func TestHTTPSProxy(t *testing.T) {
	stls, _ := testTLS(t)
	stls.ClientAuth = tls.NoClientCert
	proxy, seen := scriptedProxy(t, stls, nil, answerWith("HTTP/1.1 200 OK\r\n\r\nhello"))
	roots := x509.NewCertPool()
	roots.AddCert(stls.Certificates[0].Leaf)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	c, err := (&HTTPProxy{URL: proxy, TLSConfig: &tls.Config{RootCAs: roots}}).DialContext(ctx, "tcp", "tunnel.test:7443")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r := <-seen; r.target != "tunnel.test:7443" {
		t.Fatalf("proxy saw %+v", r)
	}
	got := make([]byte, 5)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v", got, err)
	}

	_, err = (&HTTPProxy{URL: proxy}).DialContext(ctx, "tcp", "tunnel.test:7443")
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("untrusted proxy: %v, want a certificate error", err)
	}
}

// TestHTTPProxyBadInput: bad URLs, networks and addresses are refused
// before anything is dialed.
func TestHTTPProxyBadInput(t *testing.T) {
	for _, tt := range []struct {
		name          string
		proxy         *url.URL
		network, addr string
		want          string
	}{
		{"nil URL", nil, "tcp", "a:1", "URL is nil"},
		{"socks", &url.URL{Scheme: "socks5", Host: "127.0.0.1:1080"}, "tcp", "a:1", `unsupported scheme "socks5"`},
		{"no host", &url.URL{Scheme: "http", Host: ":3128"}, "tcp", "a:1", "missing host"},
		{"udp", &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, "udp", "a:1", `cannot carry "udp"`},
		{"header injection", &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, "tcp", "a:1\r\nX-Evil: 1", "invalid address"},
		{"no port", &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, "tcp", "a", "invalid address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := (&HTTPProxy{URL: tt.proxy}).DialContext(context.Background(), tt.network, tt.addr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}
