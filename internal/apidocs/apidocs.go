// Package apidocs serves the API reference at /docs: a small page of our
// own, embedded in the binary, that renders the server's /openapi.json in
// the browser (operations grouped by tag, schemas, generated examples and
// a try-it form). It loads nothing from another origin, so it works
// offline, and a strict Content-Security-Policy says so to the browser.
package apidocs

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"time"
)

// Path is where the page is served; its assets are served beside it, at
// Path + "/" + name.
const Path = "/docs"

// CSP is the Content-Security-Policy of the page and its assets: scripts,
// styles and fetches from this origin only, no inline script or style, no
// framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed static
var static embed.FS

// contentTypes are the types of the files the page is made of, fixed
// here rather than read from the system's MIME table (a container image
// has none).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
}

// Route is one path the docs serve and its handler.
type Route struct {
	// Path is the URL path: Path for the page, Path/name for an asset.
	Path string
	// Handler answers GET and HEAD on Path.
	Handler http.Handler
}

// Routes returns the page and each of its assets, in a stable order. The
// caller mounts each on its exact path, so an unknown name under /docs/
// stays the caller's 404.
func Routes() ([]Route, error) {
	var routes []Route
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		name := path.Base(p)
		urlPath := Path + "/" + name
		if name == "index.html" {
			urlPath = Path
		}
		ctype := contentTypes[path.Ext(name)]
		if ctype == "" {
			return fmt.Errorf("apidocs: no content type for %s", name)
		}
		routes = append(routes, Route{Path: urlPath, Handler: asset(body, ctype)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("apidocs: reading the embedded files: %w", err)
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].Path < routes[j].Path })
	return routes, nil
}

// asset serves one embedded file with its security headers and an ETag
// of its content, so a browser revalidates it cheaply and a new binary's
// files are never taken from a stale cache.
func asset(body []byte, ctype string) http.Handler {
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}
