package apidocs_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/apidocs"
)

// serve mounts the routes as the API server does: each on its exact path.
func serve(t *testing.T) (*httptest.Server, map[string]bool) {
	t.Helper()
	routes, err := apidocs.Routes()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	paths := map[string]bool{}
	for _, r := range routes {
		mux.Handle("GET "+r.Path, r.Handler)
		paths[r.Path] = true
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, paths
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// references are the URLs a file makes the browser load: HTML src and
// href attributes, ES module imports, CSS url() and @import.
var references = regexp.MustCompile(`(?:\bsrc|\bhref)\s*=\s*"([^"]*)"|\bfrom\s+'([^']*)'|\bimport\s*\(\s*'([^']*)'|\burl\(\s*['"]?([^'")]*)|@import\s+['"]([^'"]*)`)

func TestPageAndAssetsAreSameOrigin(t *testing.T) {
	t.Parallel()
	srv, paths := serve(t)
	if !paths[apidocs.Path] {
		t.Fatalf("routes %v: no page at %s", paths, apidocs.Path)
	}
	wantType := map[string]string{".js": "text/javascript", ".css": "text/css", "": "text/html"}
	loaded := map[string]bool{}
	for p := range paths {
		res, body := get(t, srv.URL+p)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", p, res.StatusCode)
		}
		ext := ""
		if i := strings.LastIndex(p, "."); i > strings.LastIndex(p, "/") {
			ext = p[i:]
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, wantType[ext]) {
			t.Errorf("GET %s: Content-Type %q, want %s", p, ct, wantType[ext])
		}
		if csp := res.Header.Get("Content-Security-Policy"); csp != apidocs.CSP {
			t.Errorf("GET %s: Content-Security-Policy %q", p, csp)
		}
		for _, dir := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(apidocs.CSP, dir) {
				t.Errorf("the CSP lacks %q", dir)
			}
		}
		if strings.Contains(apidocs.CSP, "unsafe-inline") || strings.Contains(apidocs.CSP, "http") {
			t.Errorf("the CSP allows inline code or another origin: %s", apidocs.CSP)
		}
		if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", p, got)
		}
		if ext == "" && (strings.Contains(body, "<script>") || strings.Contains(body, "<style") || strings.Contains(body, " style=")) {
			t.Errorf("the page has inline script or style, which the CSP refuses")
		}
		for _, m := range references.FindAllStringSubmatch(body, -1) {
			ref := strings.Join(m[1:], "")
			switch {
			case strings.HasPrefix(ref, "#"):
				continue
			case strings.HasPrefix(ref, "./"):
				ref = apidocs.Path + "/" + strings.TrimPrefix(ref, "./")
			case !strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "//"):
				t.Errorf("%s refers to %q, not a path of this origin", p, ref)
				continue
			}
			if strings.HasPrefix(ref, apidocs.Path+"/") {
				if !paths[ref] {
					t.Errorf("%s loads %s, which is not served", p, ref)
				}
				loaded[ref] = true
			}
		}
	}
	for p := range paths {
		if p != apidocs.Path && !loaded[p] {
			t.Errorf("%s is served but nothing loads it", p)
		}
	}
	if !loaded[apidocs.Path+"/docs.js"] || !loaded[apidocs.Path+"/docs.css"] {
		t.Errorf("the page does not load its script and style: %v", loaded)
	}
}

func TestAssetsRevalidate(t *testing.T) {
	t.Parallel()
	srv, _ := serve(t)
	res, _ := get(t, srv.URL+apidocs.Path+"/docs.js")
	etag := res.Header.Get("ETag")
	if etag == "" || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q", etag, res.Header.Get("Cache-Control"))
	}
	res, body := get(t, srv.URL+apidocs.Path+"/docs.js", "If-None-Match", etag)
	if res.StatusCode != http.StatusNotModified || body != "" {
		t.Fatalf("revalidating with the ETag: %d, %d bytes", res.StatusCode, len(body))
	}
	res, _ = get(t, srv.URL+apidocs.Path+"/docs.css", "If-None-Match", etag)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("another file with docs.js's ETag: %d, want 200", res.StatusCode)
	}
}
