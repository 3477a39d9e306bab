package api

import (
	"net/http"
	"path"
	"strings"
)

// Routing answers what http.ServeMux answers in text/plain with problems,
// and makes its one prefix pattern exact. ServeMux treats a pattern ending
// in "/" ("GET /api/v1/tasks/", the list; "POST /api/v1/tasks/", the
// create) as a whole subtree, so without this POST /api/v1/tasks/{id}/cancel/
// would create a task and GET /api/v1/tasks/a/b/c would list tasks.

// route decides whether the mux may serve r. When it may not, it writes a
// 404 or 405 problem and returns false.
func (s *Server) route(w http.ResponseWriter, r *http.Request) bool {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		if !exactMatch(pattern, r.URL.Path) || !s.knownSchema(r.URL.Path) {
			s.notFound(w, r)
			return false
		}
		return true
	}
	// No pattern: ServeMux would redirect (a path to clean), answer 405
	// (another method matches) or 404. Let it decide, then rewrite its
	// answer unless it redirects.
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	switch {
	case rec.status >= 300 && rec.status < 400:
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
	case rec.status == http.StatusMethodNotAllowed:
		s.methodNotAllowed(w, r, rec.header.Get("Allow"))
	default:
		s.notFound(w, r)
	}
	return false
}

// exactMatch reports whether a matched pattern really names the path: a
// subtree pattern without wildcards matches only its own path, or that
// path without its final slash (which ServeMux redirects to it).
func exactMatch(pattern, urlPath string) bool {
	_, p, ok := strings.Cut(pattern, " ")
	if !ok {
		p = pattern
	}
	if !strings.HasSuffix(p, "/") || strings.Contains(p, "{") {
		return true
	}
	clean := path.Clean(urlPath)
	if strings.HasSuffix(urlPath, "/") && clean != "/" {
		clean += "/"
	}
	return clean == p || clean+"/" == p
}

// schemasPrefix is where huma serves the document's component schemas
// one by one (/schemas/TaskCreate.json).
const schemasPrefix = "/schemas/"

// knownSchema reports whether a path outside schemasPrefix, or one that
// names a component schema of the document: huma would answer an unknown
// name with 200 and null.
func (s *Server) knownSchema(urlPath string) bool {
	name, ok := strings.CutPrefix(urlPath, schemasPrefix)
	if !ok {
		return true
	}
	return s.api.OpenAPI().Components.Schemas.Map()[strings.TrimSuffix(name, ".json")] != nil
}

// methodNotAllowed answers 405 with the methods that really serve the path
// (those that match it only through a subtree pattern do not); 404 when
// none does.
func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	var methods []string
	for _, m := range strings.Split(allow, ", ") {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, p := s.mux.Handler(probe); p != "" && exactMatch(p, r.URL.Path) {
			methods = append(methods, m)
		}
	}
	if len(methods) == 0 {
		s.notFound(w, r)
		return
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeProblem(w, http.StatusMethodNotAllowed, r.Method+" is not allowed here; allowed: "+strings.Join(methods, ", "), nil)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, http.StatusNotFound, "no route for "+r.Method+" "+capText(r.URL.Path, maxValue)+"; GET /openapi.json lists the routes", nil)
}

// statusRecorder keeps the status and headers ServeMux's own handlers
// (redirect, 404, 405) write, and drops their text bodies.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header { return r.header }

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return len(b), nil
}

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
