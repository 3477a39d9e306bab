package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/apidocs"
)

// TestDocsRoutes checks /docs beside the API: the page and its assets are
// served without a key, /openapi.json still is, and unknown paths under
// /docs/ and /api/ stay problem+json 404s.
func TestDocsRoutes(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite")
	page := e.do("GET", "/docs", nil, "Authorization", "")
	if page.status != 200 || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /docs: %d %s", page.status, page.header.Get("Content-Type"))
	}
	if page.header.Get("Content-Security-Policy") != apidocs.CSP {
		t.Errorf("GET /docs: CSP %q", page.header.Get("Content-Security-Policy"))
	}
	for _, asset := range []string{"/docs/docs.js", "/docs/docs.css"} {
		if !strings.Contains(string(page.body), `"`+asset+`"`) {
			t.Errorf("the page does not load %s", asset)
		}
	}
	// docs.js imports the other two.
	for _, asset := range []string{"/docs/docs.js", "/docs/schema.js", "/docs/try.js", "/docs/docs.css"} {
		if r := e.do("GET", asset, nil, "Authorization", ""); r.status != 200 || len(r.body) == 0 {
			t.Errorf("GET %s: %d, %d bytes", asset, r.status, len(r.body))
		}
	}
	doc := e.do("GET", "/openapi.json", nil, "Authorization", "")
	if doc.status != 200 {
		t.Fatalf("GET /openapi.json: %d", doc.status)
	}
	var d struct {
		Tags []struct {
			Name        string `json:"name"`
			Description string `json:"description"`
		} `json:"tags"`
		Paths map[string]map[string]struct {
			Tags []string `json:"tags"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc.body, &d); err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, item := range d.Paths {
		for _, op := range item {
			for _, tag := range op.Tags {
				used[tag] = true
			}
		}
	}
	if len(d.Tags) == 0 {
		t.Fatal("the document declares no tags")
	}
	for _, tag := range d.Tags {
		if !used[tag.Name] || tag.Description == "" {
			t.Errorf("declared tag %q: used %v, description %q", tag.Name, used[tag.Name], tag.Description)
		}
	}
	if d.Tags[0].Name != "Tasks" {
		t.Errorf("the first tag is %q, want Tasks", d.Tags[0].Name)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/docs/nope.js"},
		{"GET", "/docs/"},
		{"GET", "/docs/docs.js/x"},
		{"GET", "/api/v1/nope"},
		{"GET", "/api/docs"},
	} {
		r := e.do(c.method, c.path, nil, "Authorization", "")
		if r.status != 404 || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: %d %s, want a problem+json 404", c.method, c.path, r.status, r.header.Get("Content-Type"))
		}
	}
	if r := e.do("POST", "/docs", "{}", "Authorization", ""); r.status != 405 || r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("POST /docs: %d %s, want a problem+json 405", r.status, r.header.Get("Content-Type"))
	}
}
