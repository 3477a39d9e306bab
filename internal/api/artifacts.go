package api

import (
	"errors"
	"net/http"
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
			"200": {Description: "The file.", Content: map[string]*huma.MediaType{"application/octet-stream": {Schema: &huma.Schema{Type: huma.TypeString, Format: "binary"}}}},
			"401": {Description: "Missing or invalid API key."},
			"404": {Description: "No such artifact."},
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
	if err != nil {
		if !errors.Is(err, artifact.ErrNotFound) {
			s.log.Error("opening artifact", "key", key, "error", err)
		}
		notFound()
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", info.ContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "private, max-age=3600")
	http.ServeContent(w, r, "", time.Time{}, f)
}
