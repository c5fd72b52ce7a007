package agent

import (
	"crypto/tls"
	"net/url"
	"strings"
	"testing"
)

// TestProxyOptions: a proxy is refused with transport quic and with a
// scheme other than http or https; with auto or tls, the TLS dialer goes
// through it.
func TestProxyOptions(t *testing.T) {
	proxy := &url.URL{Scheme: "http", Host: "proxy.corp:3128", User: url.UserPassword("u", "pw-secret")}
	for _, tc := range []struct {
		name      string
		transport string
		proxy     *url.URL
		want      string // error; "" for none
	}{
		{"quic", TransportQUIC, proxy, "transport quic cannot pass an HTTP proxy"},
		{"socks", TransportTLS, &url.URL{Scheme: "socks5", Host: "h:1080"}, `unsupported scheme "socks5"`},
		{"auto", TransportAuto, proxy, ""},
		{"tls", TransportTLS, proxy, ""},
		{"https proxy", TransportTLS, &url.URL{Scheme: "https", Host: "h:443"}, ""},
		{"direct", TransportAuto, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(Options{DialQUIC: noDial, TLSConfig: &tls.Config{}, ServerAddress: "tunnel.test:7443",
				Transport: tc.transport, Proxy: tc.proxy})
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v, want %q", err, tc.want)
				}
				if strings.Contains(err.Error(), "pw-secret") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if dial := a.muxConfig().Dial; (dial != nil) != (tc.proxy != nil) {
				t.Errorf("mux dialer set: %v, want %v", dial != nil, tc.proxy != nil)
			}
		})
	}
}
