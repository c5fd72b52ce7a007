package admin

import (
	"cmp"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestProtect(t *testing.T) {
	t.Parallel()
	inner := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("inner")) })
	for _, tc := range []struct {
		name, token, header string
		method, cookie      string
		want                int
	}{
		{"no header", "secret-token", "", "", "", http.StatusUnauthorized},
		{"wrong token", "secret-token", "Bearer nope", "", "", http.StatusUnauthorized},
		{"not bearer", "secret-token", "secret-token", "", "", http.StatusUnauthorized},
		{"right token", "secret-token", "Bearer secret-token", "", "", http.StatusOK},
		{"no token configured", "", "Bearer ", "", "", http.StatusUnauthorized},
		{"the page's cookie reads", "secret-token", "", "GET", "cookie", http.StatusOK},
		{"the page's cookie writes nothing", "secret-token", "", "POST", "cookie", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			method := cmp.Or(tc.method, "GET")
			req := httptest.NewRequest(method, "/metrics", nil)
			if tc.cookie != "" {
				req.AddCookie(&http.Cookie{Name: cookieName, Value: pageCookie(tc.token, time.Now().Add(time.Hour))})
			}
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			rec := httptest.NewRecorder()
			Protect(tc.token, inner).ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d", rec.Code, tc.want)
			}
			if got := rec.Body.String(); (got == "inner") != (tc.want == http.StatusOK) {
				t.Errorf("body %q", got)
			}
		})
	}
}
