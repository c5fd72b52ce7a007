package admin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func login(t *testing.T, srv *httptest.Server, token string) *http.Response {
	t.Helper()
	return do(t, postForm(t, srv.URL+"/ui/login", url.Values{"token": {token}}))
}

func postForm(t *testing.T, u string, v url.Values) *http.Request {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(v.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

func pageCookieOf(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			return c
		}
	}
	return nil
}

func TestPageFiles(t *testing.T) {
	srv := serve(t, &fakeAPI{})
	for _, tc := range []struct {
		path, wantType string
		wantCode       int
	}{
		{"/", "text/html", http.StatusOK},
		{"/ui/app.js", "javascript", http.StatusOK},
		{"/ui/style.css", "text/css", http.StatusOK},
		{"/ui/index.html", "", http.StatusMovedPermanently},
		{"/ui/missing.js", "", http.StatusNotFound},
		{"/ui/..%2fpage.go", "", http.StatusNotFound},
		{"/elsewhere", "", http.StatusNotFound},
	} {
		t.Run(tc.path, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
			resp := do(t, req)
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantCode)
			}
			if tc.wantCode != http.StatusOK {
				return
			}
			if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, tc.wantType) {
				t.Errorf("Content-Type %q, want %s", ct, tc.wantType)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
		})
	}
}

// TestPageAssetsAreLocal keeps the page free of external assets: every
// reference in its files is to the server itself.
func TestPageAssetsAreLocal(t *testing.T) {
	entries, err := pageFiles.ReadDir("page")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := pageFiles.ReadFile("page/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"http://", "https://", "//fonts.", "@import", "url("} {
			text := strings.ReplaceAll(string(data), "http://www.w3.org/2000/svg", "")
			if strings.Contains(text, bad) {
				t.Errorf("%s refers to %q: the page must load nothing from elsewhere", e.Name(), bad)
			}
		}
	}
}

func TestPageLogin(t *testing.T) {
	const token = "secret-token"
	srv := serve(t, &fakeAPI{})
	api := func(method, path string, c *http.Cookie) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if c != nil {
			req.AddCookie(c)
		}
		return do(t, req).StatusCode
	}

	t.Run("without the cookie the API says 401", func(t *testing.T) {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/status", nil)
		resp := do(t, req)
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})
	for _, wrong := range []string{"", "nope", "secret", token + "x"} {
		t.Run("wrong token "+wrong, func(t *testing.T) {
			resp := login(t, srv, wrong)
			if resp.StatusCode != http.StatusUnauthorized || pageCookieOf(t, resp) != nil {
				t.Fatalf("status %d, cookie %v", resp.StatusCode, pageCookieOf(t, resp))
			}
		})
	}

	resp := login(t, srv, token)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: status %d, Location %q; want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	c := pageCookieOf(t, resp)
	if c == nil {
		t.Fatal("login set no cookie")
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/", c)
	}
	if strings.Contains(c.Value, token) || !cookieOK(token, c.Value, time.Now()) || cookieOK("other", c.Value, time.Now()) {
		t.Errorf("cookie value %q: want the HMAC of the label and expiry keyed by the token", c.Value)
	}
	if c.MaxAge <= 0 || c.MaxAge > int(cookieLifetime/time.Second) {
		t.Errorf("cookie Max-Age %d: want at most %v", c.MaxAge, cookieLifetime)
	}
	t.Run("the cookie reads", func(t *testing.T) {
		for _, path := range []string{"/api/v1/status", "/api/v1/sessions", "/api/v1/throughput", "/api/v1/agents"} {
			if code := api("GET", path, c); code != http.StatusOK {
				t.Errorf("GET %s with the cookie: %d", path, code)
			}
		}
		if code := api("HEAD", "/api/v1/status", c); code != http.StatusOK {
			t.Errorf("HEAD with the cookie: %d", code)
		}
	})
	t.Run("the cookie changes nothing", func(t *testing.T) {
		for _, r := range [][2]string{{"POST", "/api/v1/routes"}, {"DELETE", "/api/v1/routes/r"}, {"POST", "/api/v1/agents/a/disable"}} {
			if code := api(r[0], r[1], c); code != http.StatusUnauthorized {
				t.Errorf("%s %s with the cookie: %d, want 401", r[0], r[1], code)
			}
		}
	})
	t.Run("a forged cookie", func(t *testing.T) {
		now := time.Now()
		for _, v := range []string{token, pageCookie("other", now.Add(time.Hour)), c.Value[:len(c.Value)-1],
			pageCookie(token, now.Add(-time.Second)),     // expired
			pageCookie(token, now.Add(2*cookieLifetime)), // longer than a login lasts
			"x" + c.Value, "", "123", ".", "99999999999999999999." + c.Value} {
			if code := api("GET", "/api/v1/status", &http.Cookie{Name: cookieName, Value: v}); code != http.StatusUnauthorized {
				t.Errorf("cookie %q: %d, want 401", v, code)
			}
		}
	})
	t.Run("logout", func(t *testing.T) {
		resp := do(t, postForm(t, srv.URL+"/ui/logout", nil))
		c := pageCookieOf(t, resp)
		if resp.StatusCode != http.StatusSeeOther || c == nil || c.MaxAge >= 0 || c.Value != "" {
			t.Fatalf("logout: status %d, cookie %+v; want 303 and the cookie deleted", resp.StatusCode, c)
		}
	})
}

func TestPageNoToken(t *testing.T) {
	srv := httptest.NewServer(Handler(&fakeAPI{}, "", nil))
	t.Cleanup(srv.Close)
	if resp := login(t, srv, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login with an empty token on a server without one: %d", resp.StatusCode)
	}
	c := &http.Cookie{Name: cookieName, Value: pageCookie("", time.Now().Add(time.Hour))}
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/status", nil)
	req.AddCookie(c)
	if resp := do(t, req); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a server without a token accepted a cookie: %d", resp.StatusCode)
	}
}

func TestNoEndpoint(t *testing.T) {
	srv := serve(t, &fakeAPI{})
	c := NewClient(strings.TrimPrefix(srv.URL, "http://"), "secret-token")
	for _, tc := range []struct {
		method, path string
		want         int
		allow        string
	}{
		{"GET", "/nope", http.StatusNotFound, ""},
		{"PUT", "/status", http.StatusMethodNotAllowed, "GET"},
		{"GET", "/agents/a", http.StatusMethodNotAllowed, "DELETE"},
		{"PATCH", "/agents", http.StatusMethodNotAllowed, "GET, POST"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			err := c.do(t.Context(), tc.method, tc.path, nil, nil)
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != tc.want || !strings.Contains(ae.Message, tc.path) {
				t.Fatalf("err = %v, want a JSON error with status %d naming the path", err, tc.want)
			}
			if tc.allow != "" && !strings.Contains(ae.Message, "allowed: "+tc.allow) {
				t.Errorf("message %q does not say %s is allowed", ae.Message, tc.allow)
			}
		})
	}
	t.Run("without the token", func(t *testing.T) {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/nope", nil)
		if code := do(t, req).StatusCode; code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401 before anything else", code)
		}
	})
}
