package agent

import (
	"errors"
	"fmt"

	"github.com/tunnelrelay/tunnel/pkg/mux"
)

// proxyFallback is what an agent with transport auto behind an HTTP proxy
// tells the server (Hello.Fallback) for its status: why it is on TLS.
const proxyFallback = "an HTTP proxy is in the way, and QUIC cannot pass one"

// checkProxy refuses what cannot work with Options.Proxy.
func (o *Options) checkProxy() error {
	if o.Proxy == nil {
		return nil
	}
	if o.Transport == TransportQUIC {
		return errors.New("agent: transport quic cannot pass an HTTP proxy (use tls or auto)")
	}
	if s := o.Proxy.Scheme; s != "http" && s != "https" {
		return fmt.Errorf("agent: proxy %s: unsupported scheme %q (want http or https)", o.Proxy.Redacted(), s)
	}
	return nil
}

// proxied reports whether the agent reaches the server through a proxy,
// which takes TLS only.
func (a *Agent) proxied() bool { return a.opt.Proxy != nil }

// proxyDial is mux.Config.Dial through Options.Proxy.
func (a *Agent) proxyDial() *mux.HTTPProxy { return &mux.HTTPProxy{URL: a.opt.Proxy} }

// logProxy says, once, that the agent goes through a proxy, and what that
// does to transport auto.
func (a *Agent) logProxy() {
	if !a.proxied() {
		return
	}
	a.log.Info("reaching the server through an HTTP proxy", "proxy", a.opt.Proxy.Redacted(), "server", a.opt.ServerAddress)
	if a.opt.Transport == TransportAuto {
		a.log.Info("transport auto uses TLS only: QUIC cannot pass an HTTP proxy", "proxy", a.opt.Proxy.Redacted())
	}
}
