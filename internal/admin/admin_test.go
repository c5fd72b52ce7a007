package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/store"
)

// fakeAPI answers with canned results and errors.
type fakeAPI struct {
	err   error
	added AddRouteRequest
}

func (f *fakeAPI) Status(context.Context) (*Status, error) { return &Status{Version: "v"}, f.err }
func (f *fakeAPI) Agents(context.Context) ([]Agent, error) { return []Agent{{Name: "a"}}, f.err }
func (f *fakeAPI) AddAgent(_ context.Context, r AddAgentRequest) (*Agent, error) {
	return &Agent{Name: r.Name, Fingerprint: r.Fingerprint}, f.err
}
func (f *fakeAPI) RemoveAgent(context.Context, string) error            { return f.err }
func (f *fakeAPI) SetAgentDisabled(context.Context, string, bool) error { return f.err }
func (f *fakeAPI) Routes(context.Context) ([]Route, error)              { return nil, f.err }
func (f *fakeAPI) AddRoute(_ context.Context, r AddRouteRequest) (*Route, error) {
	f.added = r
	return &Route{Name: r.Name, Listen: r.Listen}, f.err
}
func (f *fakeAPI) RemoveRoute(context.Context, string) error { return f.err }
func (f *fakeAPI) IssueEnrollToken(_ context.Context, name string, r EnrollTokenRequest) (*EnrollToken, error) {
	return &EnrollToken{Agent: name, Token: "tse_secret", Expires: time.Unix(r.ExpiresInSeconds, 0).UTC()}, f.err
}
func (f *fakeAPI) RotateAgentKey(_ context.Context, name string) (*RotateKeyResult, error) {
	return &RotateKeyResult{Agent: name}, f.err
}
func (f *fakeAPI) Sessions(context.Context) ([]Session, error) {
	return []Session{{ID: "1f", Route: "r", Client: "127.0.0.1:5000"}}, f.err
}
func (f *fakeAPI) Throughput(context.Context) (*Throughput, error) {
	return &Throughput{IntervalSeconds: 5, Samples: []ThroughputSample{{BytesUp: 10, BytesDown: 20}}}, f.err
}

func serve(t *testing.T, api API) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Handler(api, "secret-token", slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	return srv
}

func TestToken(t *testing.T) {
	srv := serve(t, &fakeAPI{})
	for _, tc := range []struct {
		name, header string
		want         int
	}{
		{"none", "", http.StatusUnauthorized},
		{"wrong", "Bearer nope", http.StatusUnauthorized},
		{"prefix of the token", "Bearer secret", http.StatusUnauthorized},
		{"right", "Bearer secret-token", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/api/v1/status", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	t.Run("client with a wrong token", func(t *testing.T) {
		_, err := NewClient(strings.TrimPrefix(srv.URL, "http://"), "nope").Status(context.Background())
		var ae *Error
		if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || !strings.Contains(ae.Message, "admin token") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestErrorStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("agent %q: %w", "a", store.ErrNotFound), http.StatusNotFound},
		{fmt.Errorf("route %q: %w", "r", store.ErrExists), http.StatusConflict},
		{fmt.Errorf("agent %q: %w", "a", store.ErrInUse), http.StatusConflict},
		{Invalid(errors.New("bad name")), http.StatusBadRequest},
		{Conflict(errors.New("port in use")), http.StatusConflict},
		{Timeout(errors.New("agent did not answer")), http.StatusGatewayTimeout},
		{errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			srv := serve(t, &fakeAPI{err: tc.err})
			err := NewClient(strings.TrimPrefix(srv.URL, "http://"), "secret-token").RemoveRoute(context.Background(), "r")
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != tc.want {
				t.Fatalf("err = %v, want status %d", err, tc.want)
			}
			// The message is the error's own, without the classification.
			if ae.Message != tc.err.Error() {
				t.Fatalf("message %q, want %q", ae.Message, tc.err.Error())
			}
		})
	}
}

func TestRequestBody(t *testing.T) {
	api := &fakeAPI{}
	srv := serve(t, api)
	c := NewClient(strings.TrimPrefix(srv.URL, "http://"), "secret-token")
	r, err := c.AddRoute(context.Background(), AddRouteRequest{Name: "r", Agent: "a", Target: "t", Listen: "127.0.0.1:0", Allow: []string{"10.0.0.0/8"}})
	if err != nil || r.Name != "r" || api.added.Allow[0] != "10.0.0.0/8" {
		t.Fatalf("AddRoute = %+v, %v (server saw %+v)", r, err, api.added)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/routes", strings.NewReader(`{"name":"r","lisen":"x"}`))
	req.Header.Set("Authorization", "Bearer secret-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a misspelt field gave %d, want 400", resp.StatusCode)
	}
}

func TestUnreachable(t *testing.T) {
	_, err := NewClient("127.0.0.1:1", "t").Agents(context.Background())
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "tunnel-server run") {
		t.Fatalf("err = %v", err)
	}
}

func TestEnrollTokenEndpoints(t *testing.T) {
	srv := serve(t, &fakeAPI{})
	c := NewClient(strings.TrimPrefix(srv.URL, "http://"), "secret-token")
	tok, err := c.IssueEnrollToken(context.Background(), "acme", EnrollTokenRequest{ExpiresInSeconds: 3600})
	if err != nil || tok.Agent != "acme" || tok.Expires.Unix() != 3600 {
		t.Fatalf("IssueEnrollToken = %+v, %v", tok, err)
	}
	res, err := c.RotateAgentKey(context.Background(), "acme")
	if err != nil || res.Agent != "acme" {
		t.Fatalf("RotateAgentKey = %+v, %v", res, err)
	}
	post := func(body string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/agents/acme/token", strings.NewReader(body))
		if body == "" {
			req.Body, req.ContentLength = http.NoBody, 0
		}
		req.Header.Set("Authorization", "Bearer secret-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(""); code != http.StatusOK {
		t.Errorf("no body: status %d, want 200 (the defaults)", code)
	}
	if code := post(`{"expires_in":60}`); code != http.StatusBadRequest {
		t.Errorf("a misspelt field gave %d, want 400", code)
	}

	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("issued", "token", EnrollToken{Agent: "acme", Token: "tse_the-secret", TokenID: "0011"})
	if strings.Contains(b.String(), "the-secret") || !strings.Contains(b.String(), "0011") {
		t.Errorf("log line %s: want the id, not the token", b.String())
	}
}
