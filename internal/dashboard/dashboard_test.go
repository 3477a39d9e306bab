package dashboard_test

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/dashboard"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

const adminKey = "dashboard-test-admin-key-0123456789"

// send sends a request with the headers and returns the answer and its
// body.
func send(t *testing.T, method, url, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, raw
}

// TestServedByTheServer: the real server serves the page at "/" and its
// assets under /ui/ without a key, with the security headers, and keeps
// every other path as it was: unknown /api/ paths and unknown dashboard
// files are problem+json 404s, other methods 405s.
func TestServedByTheServer(t *testing.T) {
	t.Parallel()
	cfg := testserver.Config(t, "sqlite", adminKey)
	cfg.Workers = 0
	srv := testserver.Start(t, cfg, app.Options{Version: "test"}, testdb.Logger(t))

	for _, tc := range []struct {
		name, path, contentType, contains string
	}{
		{"page", "/", "text/html; charset=utf-8", `<script type="module" src="/ui/js/app.js">`},
		{"script", "/ui/js/app.js", "text/javascript; charset=utf-8", "import"},
		{"style", "/ui/style.css", "text/css; charset=utf-8", ":root"},
		{"icon", "/ui/favicon.svg", "image/svg+xml", "<svg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := send(t, "GET", srv.Base+tc.path, "", nil)
			if res.StatusCode != 200 || res.Header.Get("Content-Type") != tc.contentType || !strings.Contains(string(body), tc.contains) {
				t.Fatalf("GET %s: %d %q, body %.80q", tc.path, res.StatusCode, res.Header.Get("Content-Type"), body)
			}
			csp := res.Header.Get("Content-Security-Policy")
			for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
				t.Errorf("CSP %q allows inline or eval'd script", csp)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
			etag := res.Header.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			again, _ := send(t, "GET", srv.Base+tc.path, "", http.Header{"If-None-Match": {etag}})
			if again.StatusCode != http.StatusNotModified {
				t.Errorf("revalidation with the ETag: %d, want 304", again.StatusCode)
			}
		})
	}

	for _, tc := range []struct {
		name, method, path string
		status             int
	}{
		{"unknown api path", "GET", "/api/v1/nope", 404},
		{"unknown api subpath", "GET", "/api/v1/tasks/a/b/c", 404},
		{"unknown dashboard file", "GET", "/ui/nope.js", 404},
		{"no other html route", "GET", "/tasks", 404},
		{"index by name", "GET", "/index.html", 404},
		{"post to the page", "POST", "/", 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := send(t, tc.method, srv.Base+tc.path, "", nil)
			var p struct {
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			if res.StatusCode != tc.status || res.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%s %s: %d %q, want %d problem+json", tc.method, tc.path, res.StatusCode, res.Header.Get("Content-Type"), tc.status)
			}
			if err := json.Unmarshal(body, &p); err != nil || p.Status != tc.status || p.Detail == "" {
				t.Fatalf("%s %s: body %q is not a problem with status %d", tc.method, tc.path, body, tc.status)
			}
		})
	}

	// The assets' folder, with or without its slash, leads to the page in
	// one redirect.
	for _, p := range []string{"/ui", "/ui/"} {
		req, err := http.NewRequest("GET", srv.Base+p, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusTemporaryRedirect || res.Header.Get("Location") != "/" {
			t.Errorf("GET %s: %d to %q, want 307 to /", p, res.StatusCode, res.Header.Get("Location"))
		}
		if res, body := send(t, "GET", srv.Base+p, "", nil); res.StatusCode != 200 || !strings.Contains(string(body), `src="/ui/js/app.js"`) {
			t.Errorf("GET %s, redirects followed: %d %.80q, want the page", p, res.StatusCode, body)
		}
	}

	// The page's "API docs" link leads somewhere.
	if res, body := send(t, "GET", srv.Base+"/docs", "", nil); res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Errorf("GET /docs, the page's API docs link: %d %q %.80q", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	if _, page := send(t, "GET", srv.Base+"/", "", nil); !strings.Contains(string(page), `href="/docs"`) {
		t.Error("the page has no link to /docs")
	}

	// The API still wants its key: the page is public, the data is not.
	if res, _ := send(t, "GET", srv.Base+"/api/v1/tasks/", "", nil); res.StatusCode != 401 {
		t.Errorf("GET /api/v1/tasks/ without a key: %d, want 401", res.StatusCode)
	}
}

// TestAssetsAreComplete: every file the page and its modules load is
// embedded, so a renamed module cannot break the page unnoticed; and no
// asset holds an inline script or an inline handler, which the CSP would
// block.
func TestAssetsAreComplete(t *testing.T) {
	t.Parallel()
	h, err := dashboard.New()
	if err != nil {
		t.Fatal(err)
	}
	root := "static"
	imports := regexp.MustCompile(`(?:from|import)\s+'(\./[^']+)'`)
	refs := regexp.MustCompile(`(?:src|href)="(/ui/[^"]+)"`)
	inline := regexp.MustCompile(`<script(?:\s+type="module")?>|\son[a-z]+="`)
	var files int
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		text := string(raw)
		var wanted []string
		switch filepath.Ext(p) {
		case ".js":
			for _, m := range imports.FindAllStringSubmatch(text, -1) {
				rel, _ := filepath.Rel(root, filepath.Join(filepath.Dir(p), m[1]))
				wanted = append(wanted, dashboard.Prefix+filepath.ToSlash(rel))
			}
		case ".html":
			for _, m := range refs.FindAllStringSubmatch(text, -1) {
				wanted = append(wanted, m[1])
			}
			if inline.MatchString(text) {
				t.Errorf("%s has an inline script or handler", p)
			}
		}
		for _, w := range wanted {
			if !h.Has(w) {
				t.Errorf("%s loads %s, which is not served", p, w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 5 {
		t.Fatalf("walked %d files", files)
	}
}
