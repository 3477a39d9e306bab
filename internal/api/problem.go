package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// Retry-After values, in seconds: a database that is unreachable often
// returns within seconds (a restart, a failover); one that is full needs
// someone to free space.
const (
	retryUnavailable = "5"
	retryFull        = "60"
)

// problem maps an error from the store or a processor hook to an HTTP
// problem. Store failures become 503 (unavailable) or 507 (full) with
// Retry-After; unknown errors are logged and answered with a generic 500.
// Neither leaks the underlying message.
func (s *Server) problem(err error, what string) error {
	var (
		te *task.TransitionError
		fe *registry.FieldError
	)
	switch {
	case errors.Is(err, store.ErrUnavailable):
		s.log.Warn("database unavailable", "error", err, "what", what)
		return storeProblem(http.StatusServiceUnavailable, "the database is unavailable; retry later")
	case errors.Is(err, store.ErrFull):
		s.log.Error("database full", "error", err, "what", what)
		return storeProblem(http.StatusInsufficientStorage, "the database is out of space; retry later")
	case errors.Is(err, store.ErrInvalidText):
		return huma.Error422UnprocessableEntity("a text value contains a NUL byte or is not valid UTF-8")
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
		d := &huma.ErrorDetail{Location: "body." + fe.Field, Message: fe.Message}
		if fe.Value != nil && fe.Value != "" {
			d.Value = fe.Value
		}
		return huma.Error422UnprocessableEntity("validation failed", d)
	}
	s.log.Error("request failed", "error", err, "what", what)
	return huma.Error500InternalServerError("internal error")
}

// storeProblem is a 503 or 507 problem with its Retry-After.
func storeProblem(status int, detail string) error {
	return huma.ErrorWithHeaders(huma.NewError(status, detail), http.Header{"Retry-After": {retryAfter(status)}})
}

// retryAfter is the Retry-After of a status that has one, or "".
func retryAfter(status int) string {
	switch status {
	case http.StatusServiceUnavailable:
		return retryUnavailable
	case http.StatusInsufficientStorage:
		return retryFull
	}
	return ""
}

// writeProblem writes a problem outside huma (raw handlers, panics).
func writeProblem(w http.ResponseWriter, status int, detail string, errs []*huma.ErrorDetail) {
	if ra := retryAfter(status); ra != "" && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", ra)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	capDetails(errs)
	_ = json.NewEncoder(w).Encode(&huma.ErrorModel{
		Title:  http.StatusText(status),
		Status: status,
		Detail: capText(detail, maxMessage),
		Errors: errs,
	})
}

// writeError writes an error built by problem (or any huma error) outside
// huma, with its status, details and headers.
func writeError(w http.ResponseWriter, err error) {
	var he huma.HeadersError
	if errors.As(err, &he) {
		for k, v := range he.GetHeaders() {
			w.Header()[k] = v
		}
	}
	var em *huma.ErrorModel
	if errors.As(err, &em) {
		writeProblem(w, em.Status, em.Detail, em.Errors)
		return
	}
	writeProblem(w, http.StatusInternalServerError, "internal error", nil)
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
// validation error, and so that no problem echoes a whole rejected value
// (capText).
func installErrors() {
	installErrorsOnce.Do(func() {
		orig := huma.NewError
		huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
			msg = capText(msg, maxMessage)
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
			se := orig(status, msg, errs...)
			if em, ok := se.(*huma.ErrorModel); ok {
				capDetails(em.Errors)
			}
			return se
		}
	})
}

// Problem bodies quote what they reject only in part: a rejected value is
// cut to maxValue characters, a message to maxMessage, each ending in "…"
// when cut, so a 100 KB bad field does not come back as a 100 KB error.
const (
	maxValue   = 200
	maxMessage = 1000
)

// capText cuts s to at most n characters (runes) plus "…", on a rune
// boundary, and makes it valid UTF-8.
func capText(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i, count := 0, 0
	for i = range s {
		if count == n {
			break
		}
		count++
	}
	return s[:i] + "…"
}

// capDetails caps the messages and values of error details in place.
// A composite value whose JSON is too long is replaced by its cut JSON text.
func capDetails(errs []*huma.ErrorDetail) {
	for _, d := range errs {
		if d == nil {
			continue
		}
		d.Message = capText(d.Message, maxMessage)
		d.Location = capText(d.Location, maxValue)
		switch v := d.Value.(type) {
		case nil, bool, float64, int, int64:
		case string:
			d.Value = capText(v, maxValue)
		default:
			if raw, err := json.Marshal(v); err != nil || utf8.RuneCount(raw) > maxValue {
				d.Value = capText(string(raw), maxValue)
			}
		}
	}
}
