package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"

	"github.com/danielgtaylor/huma/v2"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// problem maps an error from the store or a processor hook to an HTTP
// problem. Unknown errors are logged and answered with a generic 500 that
// leaks nothing.
func (s *Server) problem(err error, what string) error {
	var (
		te *task.TransitionError
		fe *registry.FieldError
	)
	switch {
	case errors.Is(err, task.ErrNotFound), errors.Is(err, store.ErrDeliveryNotFound):
		return huma.Error404NotFound(what + " not found")
	case errors.As(err, &te):
		return huma.Error409Conflict(te.Error())
	case errors.Is(err, store.ErrNotEditable):
		return huma.Error409Conflict(err.Error())
	case errors.Is(err, task.ErrIdempotencyMismatch):
		return huma.Error409Conflict("this Idempotency-Key was already used with a different request body")
	case errors.Is(err, store.ErrBadCursor):
		return huma.Error422UnprocessableEntity("invalid cursor", &huma.ErrorDetail{
			Location: "query.cursor", Message: "not a cursor returned by this API",
		})
	case errors.As(err, &fe):
		return huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
			Location: "body." + fe.Field, Message: fe.Message,
		})
	}
	s.log.Error("request failed", "error", err, "what", what)
	return huma.Error500InternalServerError("internal error")
}

// writeProblem writes a problem outside huma (raw handlers, panics).
func writeProblem(w http.ResponseWriter, status int, detail string, errs []*huma.ErrorDetail) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(&huma.ErrorModel{
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
		Errors: errs,
	})
}

// validationError turns huma validation results into a 422.
func validationError(res *huma.ValidateResult) error {
	details := make([]error, len(res.Errors))
	copy(details, res.Errors)
	return huma.Error422UnprocessableEntity("validation failed", details...)
}

// fieldPath names a JSON field for error locations.
func fieldPath(parts ...string) string { return strings.Join(parts, ".") }

var installErrorsOnce sync.Once

// installErrors wraps huma's error constructor (its documented extension
// point) so that a missing required property is located at the property
// itself ("body.message"), not at its parent object, like every other
// validation error.
func installErrors() {
	installErrorsOnce.Do(func() {
		orig := huma.NewError
		huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
			for _, err := range errs {
				d, ok := err.(*huma.ErrorDetail)
				if !ok {
					continue
				}
				if name, ok := strings.CutPrefix(d.Message, "expected required property "); ok {
					if name, ok = strings.CutSuffix(name, " to be present"); ok && !strings.HasSuffix(d.Location, "."+name) {
						d.Location = fieldPath(d.Location, name)
					}
				}
			}
			return orig(status, msg, errs...)
		}
	})
}
