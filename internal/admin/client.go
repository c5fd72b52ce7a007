package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to a running tunnel-server's admin endpoint.
type Client struct {
	endpoint string // for messages
	base     string // URL prefix
	token    string
	http     *http.Client
}

// NewClient returns a client for endpoint, which is "host:port" or
// "unix:/path/to.sock", authenticating with token.
func NewClient(endpoint, token string) *Client {
	c := &Client{endpoint: endpoint, token: token}
	tr := &http.Transport{}
	if path, ok := strings.CutPrefix(endpoint, "unix:"); ok {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		c.base = "http://tunnel-server/api/v1"
	} else {
		c.base = "http://" + endpoint + "/api/v1"
	}
	c.http = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return c
}

// Error is an error reported by the server.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// ErrUnreachable wraps a failure to reach the admin endpoint at all.
var ErrUnreachable = errors.New("cannot reach tunnel-server")

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s (is `tunnel-server run` running with this config?): %v", ErrUnreachable, c.endpoint, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var eb errorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("admin API: %s", resp.Status)
		}
		return &Error{Status: resp.StatusCode, Message: eb.Error}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("admin API: bad response: %w", err)
		}
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.do(ctx, http.MethodGet, "/status", nil, &st)
}

func (c *Client) Agents(ctx context.Context) ([]Agent, error) {
	var a []Agent
	return a, c.do(ctx, http.MethodGet, "/agents", nil, &a)
}

func (c *Client) AddAgent(ctx context.Context, req AddAgentRequest) (*Agent, error) {
	var a Agent
	return &a, c.do(ctx, http.MethodPost, "/agents", req, &a)
}

func (c *Client) RemoveAgent(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/agents/"+url.PathEscape(name), nil, nil)
}

func (c *Client) SetAgentDisabled(ctx context.Context, name string, disabled bool) error {
	verb := "enable"
	if disabled {
		verb = "disable"
	}
	return c.do(ctx, http.MethodPost, "/agents/"+url.PathEscape(name)+"/"+verb, nil, nil)
}

func (c *Client) Routes(ctx context.Context) ([]Route, error) {
	var r []Route
	return r, c.do(ctx, http.MethodGet, "/routes", nil, &r)
}

func (c *Client) AddRoute(ctx context.Context, req AddRouteRequest) (*Route, error) {
	var r Route
	return &r, c.do(ctx, http.MethodPost, "/routes", req, &r)
}

func (c *Client) RemoveRoute(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/routes/"+url.PathEscape(name), nil, nil)
}

func (c *Client) IssueEnrollToken(ctx context.Context, name string, req EnrollTokenRequest) (*EnrollToken, error) {
	var t EnrollToken
	return &t, c.do(ctx, http.MethodPost, "/agents/"+url.PathEscape(name)+"/token", req, &t)
}

func (c *Client) RotateAgentKey(ctx context.Context, name string) (*RotateKeyResult, error) {
	var r RotateKeyResult
	return &r, c.do(ctx, http.MethodPost, "/agents/"+url.PathEscape(name)+"/rotate", nil, &r)
}

func (c *Client) Sessions(ctx context.Context) ([]Session, error) {
	var s []Session
	return s, c.do(ctx, http.MethodGet, "/sessions", nil, &s)
}

func (c *Client) Throughput(ctx context.Context) (*Throughput, error) {
	var t Throughput
	return &t, c.do(ctx, http.MethodGet, "/throughput", nil, &t)
}

var _ API = (*Client)(nil)
