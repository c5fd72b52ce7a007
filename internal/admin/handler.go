package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tunnelrelay/tunnel/internal/store"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// maxBody bounds a request body.
const maxBody = 1 << 20

// Handler serves api under /api/v1 to clients that present token, and the
// status page (see page.go) to anyone: the page's files carry no data, it
// fetches the data from the API like any other client.
func Handler(api API, token string, log *slog.Logger) http.Handler {
	h, _ := newHandler(api, token, log)
	return h
}

// newHandler is Handler, and the patterns it serves, which docs/API.md
// must document.
func newHandler(api API, token string, log *slog.Logger) (http.Handler, []string) {
	if log == nil {
		log = slog.Default()
	}
	h := &handler{api: api, log: log}
	// Every pattern under /api/ needs the token: requireToken guards the
	// whole mux.
	mux := newRouter()
	mux.HandleFunc("GET /api/v1/status", h.status)
	mux.HandleFunc("GET /api/v1/agents", h.agents)
	mux.HandleFunc("POST /api/v1/agents", h.addAgent)
	mux.HandleFunc("DELETE /api/v1/agents/{name}", h.removeAgent)
	mux.HandleFunc("POST /api/v1/agents/{name}/disable", h.setDisabled(true))
	mux.HandleFunc("POST /api/v1/agents/{name}/enable", h.setDisabled(false))
	mux.HandleFunc("POST /api/v1/agents/{name}/token", h.issueEnrollToken)
	mux.HandleFunc("POST /api/v1/agents/{name}/rotate", h.rotateAgentKey)
	mux.HandleFunc("GET /api/v1/routes", h.routes)
	mux.HandleFunc("POST /api/v1/routes", h.addRoute)
	mux.HandleFunc("DELETE /api/v1/routes/{name}", h.removeRoute)
	mux.HandleFunc("GET /api/v1/sessions", h.sessions)
	mux.HandleFunc("GET /api/v1/throughput", h.throughput)
	// Not an endpoint: answers, in JSON, what no endpoint does.
	mux.ServeMux.Handle("/api/", noEndpoint(mux.ServeMux))

	page := newRouter()
	p := &statusPage{token: token, log: log}
	page.HandleFunc("GET /{$}", p.index)
	page.HandleFunc("GET /ui/{file}", p.file)
	page.HandleFunc("POST /ui/login", p.login)
	page.HandleFunc("POST /ui/logout", p.logout)

	root := http.NewServeMux()
	root.Handle("/api/", requireToken(token, mux))
	root.Handle("/", page)
	return root, append(mux.patterns, page.patterns...)
}

// router is a ServeMux that remembers its patterns.
type router struct {
	*http.ServeMux
	patterns []string
}

func newRouter() *router { return &router{ServeMux: http.NewServeMux()} }

func (r *router) Handle(pattern string, h http.Handler) {
	r.patterns = append(r.patterns, pattern)
	r.ServeMux.Handle(pattern, h)
}

func (r *router) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	r.Handle(pattern, http.HandlerFunc(h))
}

// noEndpoint answers requests that match no endpoint of mux: 405 when the
// path has endpoints for other methods, else 404.
func noEndpoint(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/api/" && pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %s: no such endpoint (see docs/API.md)", r.Method, r.URL.Path))
	})
}

// requireToken passes on requests that carry the bearer token, and GET and
// HEAD requests that carry the status page's cookie (see pageCookie). A
// browser sends that cookie with any request to the admin address, a
// form's POST included; accepting it for reads only means a cookie can
// never change anything, so no request forged by another site can.
func requireToken(token string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bearer, isBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		ok := isBearer && auth.TokenEqual(bearer, token)
		if !ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			if c, err := r.Cookie(cookieName); err == nil {
				ok = cookieOK(token, c.Value, time.Now())
			}
		}
		if token == "" || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tunnel-server"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong admin token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

type handler struct {
	api API
	log *slog.Logger
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	st, err := h.api.Status(r.Context())
	h.reply(w, st, err)
}

func (h *handler) agents(w http.ResponseWriter, r *http.Request) {
	a, err := h.api.Agents(r.Context())
	h.reply(w, a, err)
}

func (h *handler) addAgent(w http.ResponseWriter, r *http.Request) {
	var req AddAgentRequest
	if !decode(w, r, &req) {
		return
	}
	a, err := h.api.AddAgent(r.Context(), req)
	h.reply(w, a, err)
}

func (h *handler) removeAgent(w http.ResponseWriter, r *http.Request) {
	h.reply(w, nil, h.api.RemoveAgent(r.Context(), r.PathValue("name")))
}

func (h *handler) setDisabled(disabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h.reply(w, nil, h.api.SetAgentDisabled(r.Context(), r.PathValue("name"), disabled))
	}
}

func (h *handler) issueEnrollToken(w http.ResponseWriter, r *http.Request) {
	var req EnrollTokenRequest
	if r.ContentLength != 0 && !decode(w, r, &req) {
		return
	}
	t, err := h.api.IssueEnrollToken(r.Context(), r.PathValue("name"), req)
	h.reply(w, t, err)
}

func (h *handler) rotateAgentKey(w http.ResponseWriter, r *http.Request) {
	res, err := h.api.RotateAgentKey(r.Context(), r.PathValue("name"))
	h.reply(w, res, err)
}

func (h *handler) routes(w http.ResponseWriter, r *http.Request) {
	rt, err := h.api.Routes(r.Context())
	h.reply(w, rt, err)
}

func (h *handler) addRoute(w http.ResponseWriter, r *http.Request) {
	var req AddRouteRequest
	if !decode(w, r, &req) {
		return
	}
	rt, err := h.api.AddRoute(r.Context(), req)
	h.reply(w, rt, err)
}

func (h *handler) removeRoute(w http.ResponseWriter, r *http.Request) {
	h.reply(w, nil, h.api.RemoveRoute(r.Context(), r.PathValue("name")))
}

func (h *handler) sessions(w http.ResponseWriter, r *http.Request) {
	s, err := h.api.Sessions(r.Context())
	h.reply(w, s, err)
}

func (h *handler) throughput(w http.ResponseWriter, r *http.Request) {
	t, err := h.api.Throughput(r.Context())
	h.reply(w, t, err)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	return true
}

func (h *handler) reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		code := statusOf(err)
		if code == http.StatusInternalServerError {
			h.log.Error("admin request failed", "err", err)
		}
		writeError(w, code, err.Error())
		return
	}
	if v == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	// Live state: a browser must not show an old copy.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrInvalid), errors.Is(err, store.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict), errors.Is(err, store.ErrExists), errors.Is(err, store.ErrInUse):
		return http.StatusConflict
	case errors.Is(err, ErrTimeout):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(errorBody{Error: strings.TrimSpace(msg)})
}
