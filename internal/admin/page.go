package admin

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// The status page: static files that carry no data, and a login that
// turns the admin token into a cookie the page's API requests carry.

//go:embed page
var pageFiles embed.FS

// cookieName is the status page's cookie.
const cookieName = "tunnel_admin"

// cookieLabel is what pageCookie authenticates. Changing it logs every
// browser out.
const cookieLabel = "tunnel-server status page v1"

// cookieLifetime is how long a status page login lasts.
const cookieLifetime = 12 * time.Hour

// pageCookie returns the status page's cookie value for token, valid until
// exp: the expiry in Unix seconds, a dot, and an HMAC-SHA256 of a fixed
// label and the expiry keyed by the token. It proves its holder was given
// the token without being the token, so a cookie read from a browser
// profile does not work as a bearer token on state-changing requests, and
// it stops working at its expiry (or when the token changes).
func pageCookie(token string, exp time.Time) string {
	stamp := strconv.FormatInt(exp.Unix(), 10)
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte(cookieLabel + "|" + stamp))
	return stamp + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// cookieOK reports whether value is a pageCookie for token that has not
// expired.
func cookieOK(token, value string, now time.Time) bool {
	stamp, _, ok := strings.Cut(value, ".")
	sec, err := strconv.ParseInt(stamp, 10, 64)
	if !ok || err != nil || token == "" {
		return false
	}
	exp := time.Unix(sec, 0)
	if !now.Before(exp) || exp.Sub(now) > cookieLifetime {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(value), []byte(pageCookie(token, exp))) == 1
}

// pageCSP lets the page load only its own files and talk only to its own
// server: no inline script, no external assets.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// maxLoginBody bounds the login form.
const maxLoginBody = 4 << 10

type statusPage struct {
	token string
	log   *slog.Logger
}

func (p *statusPage) index(w http.ResponseWriter, r *http.Request) {
	p.serve(w, r, "index.html")
}

func (p *statusPage) file(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "index.html" {
		// One address for the page.
		http.Redirect(w, r, "/", http.StatusMovedPermanently)
		return
	}
	p.serve(w, r, name)
}

func (p *statusPage) serve(w http.ResponseWriter, r *http.Request, name string) {
	data, err := fs.ReadFile(pageFiles, path.Join("page", name))
	if err != nil || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// Revalidated each time, so an upgraded server's page is never mixed
	// with an old script.
	h.Set("Cache-Control", "no-cache")
	// ServeContent sets the Content-Type from the name.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}

// login checks the form's token and, when it is right, sets the cookie
// that lets the page read the API.
func (p *statusPage) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	got := strings.TrimSpace(r.PostFormValue("token"))
	if !auth.TokenEqual(got, p.token) {
		p.log.Warn("status page login refused: wrong admin token", logging.KeyClient, r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "wrong admin token")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    pageCookie(p.token, time.Now().Add(cookieLifetime)),
		MaxAge:   int(cookieLifetime / time.Second),
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	})
	p.log.Info("status page login", logging.KeyClient, r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (p *statusPage) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
