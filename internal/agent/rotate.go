package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// Key rotation, agent side. When the server asks (RotateKey), the agent
// makes a key, announces it with NewKey on its live connection and, once
// the server has answered KeyAccepted, stores it (Options.Keys) and moves
// to a new connection that uses it; sessions on the old connection finish
// there. Until the new connection is the live one the server accepts both
// keys, so a failure anywhere leaves the old key working.

// KeyStore stores the agent's key when it rotates: tunnel-agent rewrites
// its config file.
type KeyStore interface {
	// Check reports why a new key could not be stored now, or nil. The
	// agent asks before it announces a new key.
	Check() error
	// Store stores key durably in place of the current one and returns
	// the TLS configuration that authenticates with it.
	Store(key *auth.AgentKey) (*tls.Config, error)
}

// errNoKeyStore says why an agent without Options.Keys cannot rotate.
var errNoKeyStore = errors.New("this agent has nowhere to store a new key (it was started without a config file it may rewrite)")

// rotateKey answers the server's RotateKey on c. It logs what happens.
func (c *conn) rotateKey(ctx context.Context) {
	a := c.a
	if !a.rotating.CompareAndSwap(false, true) {
		a.log.Info("the server asked for a new key; a rotation is already under way")
		return
	}
	defer a.rotating.Store(false)
	a.log.Info("the server asked for a new key")
	ks := a.opt.Keys
	if ks == nil {
		a.log.Error("key not rotated", logging.KeyErr, errNoKeyStore)
		return
	}
	if err := ks.Check(); err != nil {
		a.log.Error("key not rotated: the new key could not be stored", logging.KeyErr, err)
		return
	}
	key, err := auth.NewAgentKey()
	if err != nil {
		a.log.Error("key not rotated", logging.KeyErr, err)
		return
	}
	if err := c.announceKey(ctx, key.Fingerprint(), c.keyReply); err != nil {
		a.log.Error("key not rotated; the current key stays in use", logging.KeyErr, err)
		return
	}
	tlsConf, err := ks.Store(key)
	if err != nil {
		a.log.Error("the server accepted the new key, but it could not be stored; the current key stays in use", logging.KeyErr, err)
		return
	}
	a.log.Info("new key stored; moving to a new connection that uses it", "fingerprint", key.Fingerprint())
	a.SetTLSConfig(tlsConf)
}

// announceKey sends NewKey on c and waits for the KeyAccepted that replies
// deliver, within the handshake timeout.
func (c *conn) announceKey(ctx context.Context, fingerprint string, replies <-chan proto.KeyAccepted) error {
	// Drop an answer to an earlier announcement that came too late.
	select {
	case <-replies:
	default:
	}
	if err := c.writeJSON(proto.FrameNewKey, &proto.NewKey{Fingerprint: fingerprint}); err != nil {
		return fmt.Errorf("announce the new key: %w", err)
	}
	t := time.NewTimer(c.a.opt.HandshakeTimeout)
	defer t.Stop()
	select {
	case r := <-replies:
		return keyAccepted(r, fingerprint)
	case <-t.C:
		return fmt.Errorf("the server did not answer the new key within %v", c.a.opt.HandshakeTimeout)
	case <-ctx.Done():
		return ctx.Err()
	case <-c.sess.Done():
		return errors.New("the connection closed before the server answered the new key")
	}
}

// keyAccepted checks the server's answer to the announcement of fingerprint.
func keyAccepted(r proto.KeyAccepted, fingerprint string) error {
	switch {
	case r.Error != "":
		return fmt.Errorf("the server refused the new key: %s", r.Error)
	case r.Fingerprint != fingerprint:
		return fmt.Errorf("the server answered for key %s, not %s", r.Fingerprint, fingerprint)
	}
	return nil
}

// AnnounceKey tells the server the agent's next key, as `tunnel-agent
// rotate` does: it connects with the current key (a probe connection,
// which does not disturb a running copy of the agent), sends NewKey and
// waits for the server to accept it. From then on the server accepts both
// keys, until the agent connects with the new one.
func (a *Agent) AnnounceKey(ctx context.Context, fingerprint string) error {
	c, err := a.connect(ctx, true)
	if err != nil {
		return err
	}
	defer c.sess.Close()
	if c.welcome.Version < 2 {
		return fmt.Errorf("the server speaks protocol version %d, which cannot rotate keys: upgrade tunnel-server", c.welcome.Version)
	}
	replies := make(chan proto.KeyAccepted, 1)
	read := make(chan error, 1)
	go func() {
		// Only the answer is expected on a probe connection.
		t, p, err := proto.ReadFrame(c.ctl, a.opt.MaxHeaderSize)
		switch {
		case err != nil:
		case t == proto.FrameKeyAccepted:
			var r proto.KeyAccepted
			if err = proto.DecodeJSON(t, p, &r); err == nil {
				replies <- r
			}
		case t == proto.FrameRefuse:
			var ref proto.Refuse
			if err = proto.DecodeJSON(t, p, &ref); err == nil {
				err = &ref
			}
		default:
			err = fmt.Errorf("%w: %s in answer to the new key", proto.ErrUnexpected, t)
		}
		read <- err
	}()
	err = c.announceKey(ctx, fingerprint, replies)
	c.sess.Close()
	if rerr := <-read; err != nil && rerr != nil {
		return rerr // says more: a refusal, say
	}
	return err
}
