package admin

import "net/http"

// Protect serves h only to requests the admin API would let in: those that
// carry the admin token ("Authorization: Bearer TOKEN"), and GET and HEAD
// requests with the status page's cookie; others get 401. It is how
// endpoints beside the API, such as /metrics, share its credential.
func Protect(token string, h http.Handler) http.Handler { return requireToken(token, h) }
