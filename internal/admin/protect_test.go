package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestProtect(t *testing.T) {
	t.Parallel()
	inner := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("inner")) })
	for _, tc := range []struct {
		name, token, header string
		want                int
	}{
		{"no header", "secret-token", "", http.StatusUnauthorized},
		{"wrong token", "secret-token", "Bearer nope", http.StatusUnauthorized},
		{"not bearer", "secret-token", "secret-token", http.StatusUnauthorized},
		{"right token", "secret-token", "Bearer secret-token", http.StatusOK},
		{"no token configured", "", "Bearer ", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest("GET", "/metrics", nil)
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
