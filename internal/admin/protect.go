package admin

import "net/http"

// Protect serves h only to requests that carry the admin token, exactly as
// the admin API checks it (an "Authorization: Bearer TOKEN" header); others
// get 401. It is how endpoints beside the API, such as /metrics, share its
// credential.
func Protect(token string, h http.Handler) http.Handler { return requireToken(token, h) }
