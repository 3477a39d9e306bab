package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/task"
)

// registerArtifactRoutes serves GET /api/v1/artifacts/{key...}. Keys contain
// slashes, so the route is a plain handler on the mux, documented in the
// OpenAPI document by hand.
func (s *Server) registerArtifactRoutes() {
	s.api.OpenAPI().AddOperation(&huma.Operation{
		OperationID: "get-artifact", Method: http.MethodGet, Path: "/api/v1/artifacts/{key}", Tags: []string{"Artifacts"},
		Summary:     "Download an artifact",
		Description: "Keys look like `tasks/<task id>/<name>` and may contain slashes. A tenant key can only download its own tasks' artifacts. Supports Range requests.",
		Security:    bearer,
		Parameters:  []*huma.Param{{Name: "key", In: "path", Required: true, Schema: &huma.Schema{Type: huma.TypeString}}},
		Responses: map[string]*huma.Response{
			"200": {Description: "The whole file, served with the artifact's own media type (its `content_type`, e.g. `image/png`).",
				Content: map[string]*huma.MediaType{"*/*": {Schema: &huma.Schema{Type: huma.TypeString, Format: "binary"}}}},
			"206": {Description: "The requested range of the file, with `Content-Range`.",
				Content: map[string]*huma.MediaType{"*/*": {Schema: &huma.Schema{Type: huma.TypeString, Format: "binary"}}}},
			"401": {Description: "Missing or invalid API key."},
			"404": {Description: "No such artifact."},
			"503": {Description: "The artifact store (an S3 bucket) cannot be reached; retry after `Retry-After`."},
			"416": {Description: "The Range cannot be satisfied; `Content-Range: bytes */<size>` gives the file's size."},
		},
	})
	s.mux.HandleFunc("GET /api/v1/artifacts/{key...}", s.serveArtifact)
}

func (s *Server) serveArtifact(w http.ResponseWriter, r *http.Request) {
	p, ok := s.authorize(w, r)
	if !ok {
		return
	}
	key := r.PathValue("key")
	notFound := func() { writeProblem(w, http.StatusNotFound, "artifact not found", nil) }
	if artifact.ValidateKey(key) != nil || s.deps.Artifacts == nil {
		notFound()
		return
	}
	// Artifacts belong to tasks; the caller must be able to see the task.
	rawID, ok := artifact.TaskIDOf(key)
	if !ok {
		notFound()
		return
	}
	id, ok := canonicalUUID(rawID)
	if !ok {
		notFound()
		return
	}
	if _, err := s.deps.Store.GetTask(r.Context(), id, p.scope()); err != nil {
		if !errors.Is(err, task.ErrNotFound) {
			writeError(w, s.problem(err, "task"))
			return
		}
		notFound()
		return
	}
	f, info, err := s.deps.Artifacts.Open(r.Context(), key)
	if errors.Is(err, artifact.ErrNotFound) {
		notFound()
		return
	}
	if err != nil {
		// The store (an S3 bucket) failed: the artifact may well exist.
		s.log.Error("opening artifact", "key", key, "error", err)
		writeProblem(w, http.StatusServiceUnavailable, "the artifact store is unavailable; retry later", nil)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", info.ContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "private, max-age=3600")
	pw := &problemWriter{ResponseWriter: w}
	http.ServeContent(pw, r, "", time.Time{}, f)
	pw.finish(s.log, key)
}

// problemWriter turns the text/plain errors http.ServeContent writes (416
// for an unsatisfiable or malformed Range, 412 for a failed If-Match, 500
// when the file cannot be read) into problems, keeping the headers it set
// for them (Content-Range on a 416, RFC 9110 §15.5.17). Other answers pass
// through.
type problemWriter struct {
	http.ResponseWriter
	status int
	text   strings.Builder
}

// WriteHeader holds back an error status until finish.
func (p *problemWriter) WriteHeader(code int) {
	if code < http.StatusBadRequest {
		p.ResponseWriter.WriteHeader(code)
		return
	}
	p.status = code
}

// Write passes content through and keeps an error's text.
func (p *problemWriter) Write(b []byte) (int, error) {
	if p.status == 0 {
		return p.ResponseWriter.Write(b)
	}
	if p.text.Len() < maxMessage {
		p.text.Write(b)
	}
	return len(b), nil
}

// Unwrap gives http.ResponseController the underlying writer.
func (p *problemWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// finish writes the held-back error, if any, as a problem.
func (p *problemWriter) finish(log *slog.Logger, key string) {
	text := strings.TrimSpace(p.text.String())
	switch p.status {
	case 0:
		return
	case http.StatusRequestedRangeNotSatisfiable:
		text = "the Range cannot be served: " + text
	case http.StatusPreconditionFailed:
		text = "a precondition (If-Match or If-Unmodified-Since) failed"
	default:
		log.Error("serving artifact", "key", key, "status", p.status, "error", text)
		text = "internal error"
	}
	p.ResponseWriter.Header().Del("Content-Length")
	writeProblem(p.ResponseWriter, p.status, text, nil)
}
