// Package dashboard serves the web dashboard: plain HTML, CSS and ES
// modules embedded in the binary (no CDN, no build step), served at "/"
// (the one HTML page; views are hash routes, #/tasks/<id>) and "/ui/..."
// (its assets). The page talks to the API with the API key the person
// signs in with, kept in the browser's sessionStorage only.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is the path the assets are served under.
const Prefix = "/ui/"

// ContentSecurityPolicy is sent with every response of the dashboard: only
// its own scripts and styles run (no inline script), it talks only to its
// own origin, shows media from its own origin or from blob: URLs (the
// artifacts it fetches with the API key), and may not be framed.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' blob:; media-src 'self' blob:; font-src 'self'; manifest-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// file is one embedded asset, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the dashboard: "/" and the assets under Prefix, mounted
// on Patterns (GET and HEAD); "/ui" and "/ui/" redirect to "/"; another
// path is a problem+json 404.
type Handler struct {
	files map[string]file // by URL path: "/" and "/ui/..."
}

// contentTypes are the media types of the asset extensions, fixed here
// rather than read from the system's MIME tables, which vary.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
}

// New reads the embedded files. It fails only if the embedded tree is
// broken (an asset of an unknown kind), which is a build defect.
func New() (*Handler, error) {
	h := &Handler{files: map[string]file{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("dashboard: no content type for %s", p)
		}
		sum := sha256.Sum256(body)
		f := file{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		rel := strings.TrimPrefix(p, "static/")
		if rel == "index.html" {
			h.files["/"] = f
			return nil
		}
		h.files[Prefix+rel] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard: reading embedded files: %w", err)
	}
	if _, ok := h.files["/"]; !ok {
		return nil, fmt.Errorf("dashboard: index.html is not embedded")
	}
	return h, nil
}

// Has reports whether the handler serves a file at the URL path.
func (h *Handler) Has(urlPath string) bool {
	_, ok := h.files[urlPath]
	return ok
}

// Patterns are the http.ServeMux patterns the handler should be mounted
// on: exactly "/", the asset subtree, and exactly "/ui" (which the mux
// would otherwise redirect to "/ui/" itself).
func Patterns() []string {
	return []string{"GET /{$}", "GET " + Prefix + "{path...}", "GET " + strings.TrimSuffix(Prefix, "/")}
}

// ServeHTTP serves an embedded file with the security headers, revalidated
// by its ETag on every load (Cache-Control: no-cache), so a new binary's
// files are picked up at once.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.URL.Path == Prefix || r.URL.Path+"/" == Prefix {
		// The assets' folder is no page: a person typing /ui gets the
		// dashboard.
		http.Redirect(w, r, "/", http.StatusTemporaryRedirect)
		return
	}
	f, ok := h.files[r.URL.Path]
	if !ok {
		problem(w, http.StatusNotFound, "no dashboard file at "+capText(r.URL.Path))
		return
	}
	hd.Set("Content-Type", f.contentType)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

// problem writes an RFC 9457 problem, as the API does.
func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"title": http.StatusText(status), "status": status, "detail": detail})
}

// capText shortens a path echoed in a problem.
func capText(s string) string {
	const limit = 200
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}

var _ http.Handler = (*Handler)(nil)
