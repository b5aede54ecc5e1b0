package engine

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// navigation reports a browser navigation: GET or HEAD whose Accept prefers HTML
// (its highest-q media range is text/html or application/xhtml+xml). fetch() and
// API clients send */* or application/json and keep getting 401.
func navigation(req *Request) bool {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return false
	}
	best, bestQ := "", -1.0
	for _, r := range strings.Split(req.Accept, ",") {
		media, params, _ := strings.Cut(strings.TrimSpace(r), ";")
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "q="); ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					q = f
				}
			}
		}
		if q > bestQ {
			best, bestQ = strings.ToLower(strings.TrimSpace(media)), q
		}
	}
	return bestQ > 0 && (best == "text/html" || best == "application/xhtml+xml")
}

// signInLocation is signIn with the original path and query as callbackURL. The
// path passed the engine's canonical checks (it starts with one "/", holds no "\\"
// or control character), so it can only name a page of this site: never an open
// redirect.
func signInLocation(signIn, path string) string {
	sep := "?"
	if strings.Contains(signIn, "?") {
		sep = "&"
	}
	return signIn + sep + "callbackURL=" + url.QueryEscape(path)
}
