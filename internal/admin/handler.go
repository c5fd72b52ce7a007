package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/tunnelrelay/tunnel/internal/store"
)

// maxBody bounds a request body.
const maxBody = 1 << 20

// Handler serves api to clients that present token.
func Handler(api API, token string, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	h := &handler{api: api, log: log}
	mux := http.NewServeMux()
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
	return requireToken(token, mux)
}

func requireToken(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if token == "" || subtle.ConstantTimeCompare(got, want) != 1 {
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
