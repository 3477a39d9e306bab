package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
)

// Text the API accepts is valid UTF-8 without NUL bytes, in bodies (JSON
// "\u0000" escapes included), query parameters and the headers it reads.
// PostgreSQL refuses both in text and jsonb, SQLite would store them: the
// check happens here, before the store, so both databases answer the same
// 422 naming the field. Lone UTF-16 surrogate escapes ("\ud800") are valid
// JSON that Go decodes to U+FFFD; they are accepted as such.

// checkedHeaders are the request headers the API reads as text.
var checkedHeaders = []string{"Idempotency-Key", "Last-Event-ID"}

// textProblem says what is wrong with s as text, or "".
func textProblem(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case strings.IndexByte(s, 0) >= 0:
		return "contains a NUL byte"
	}
	return ""
}

// requestTextErrors checks the query parameters (names and values) and
// the headers the API reads.
func requestTextErrors(r *http.Request) []*huma.ErrorDetail {
	var errs []*huma.ErrorDetail
	if r.URL.RawQuery != "" {
		for name, values := range r.URL.Query() {
			if msg := textProblem(name); msg != "" {
				errs = append(errs, &huma.ErrorDetail{Location: "query." + name, Message: "the parameter's name " + msg})
				continue
			}
			for _, v := range values {
				if msg := textProblem(v); msg != "" {
					errs = append(errs, &huma.ErrorDetail{Location: "query." + name, Message: msg})
					break
				}
			}
		}
	}
	for _, h := range checkedHeaders {
		for _, v := range r.Header.Values(h) {
			if msg := textProblem(v); msg != "" {
				errs = append(errs, &huma.ErrorDetail{Location: "header." + h, Message: msg})
				break
			}
		}
	}
	return errs
}

// bodyTextError finds the first string (key or value) of a JSON body that
// is not valid UTF-8 or holds a NUL, and names it ("body.prompt",
// "body.webhook_events[1]"). Bodies that are not JSON are left to the
// decoder's own error.
func bodyTextError(body []byte) *huma.ErrorDetail {
	if utf8.Valid(body) && !bytes.Contains(body, []byte(`\u0000`)) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		object bool
		key    string
		index  int
		wantK  bool // in an object, the next string is a key
	}
	var stack []frame
	loc := func(last string) string {
		var b strings.Builder
		b.WriteString("body")
		for _, f := range stack {
			if f.object {
				if f.key != "" {
					b.WriteString("." + f.key)
				}
			} else {
				b.WriteString("[" + strconv.Itoa(f.index) + "]")
			}
		}
		if last != "" {
			b.WriteString("." + last)
		}
		return b.String()
	}
	// after moves the enclosing container past one value.
	after := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].object {
				stack[n-1].wantK = true
			} else {
				stack[n-1].index++
			}
		}
	}
	prev := int64(0)
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		raw := body[prev:dec.InputOffset()]
		prev = dec.InputOffset()
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, frame{object: true, wantK: true})
			case '[':
				stack = append(stack, frame{})
			default:
				stack = stack[:len(stack)-1]
				after()
			}
			continue
		case string:
			msg := textProblem(t)
			if msg == "" && !utf8.Valid(raw) {
				msg = "is not valid UTF-8"
			}
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantK {
				if msg != "" {
					stack[n-1].key = ""
					return &huma.ErrorDetail{Location: loc(printable(t)), Message: "the property's name " + msg}
				}
				stack[n-1].key, stack[n-1].wantK = t, false
				continue
			}
			if msg != "" {
				return &huma.ErrorDetail{Location: loc(""), Message: msg}
			}
		}
		after()
	}
}

// checkBody is the huma middleware (after authentication) that reads the
// body of operations that take one, answers 400 when it cannot be read
// whole (a connection that ends before Content-Length, a malformed chunked
// encoding), 415 when it has a content coding, 413 at once when its
// declared length is over the limit, 422 when its text is not storable,
// and hands the bytes on to huma. Streamed (chunked) bodies over the
// operation's limit are left to huma's 413.
func (s *Server) checkBody(ctx huma.Context, next func(huma.Context)) {
	op := ctx.Operation()
	if op.RequestBody == nil {
		next(ctx)
		return
	}
	r, _ := humago.Unwrap(ctx)
	limit := op.MaxBodyBytes
	if limit <= 0 {
		limit = s.cfg.MaxBodyBytes
	}
	if d := encodingError(r.Header); d != nil {
		ctx.SetHeader("Accept-Encoding", "identity")
		_ = huma.WriteErr(s.api, ctx, http.StatusUnsupportedMediaType, "the request body must not be encoded: only identity is accepted", d)
		return
	}
	if r.ContentLength > limit {
		// Refused before reading: the body may never come.
		_ = huma.WriteErr(s.api, ctx, http.StatusRequestEntityTooLarge,
			"the declared Content-Length "+strconv.FormatInt(r.ContentLength, 10)+" is over the limit of "+strconv.FormatInt(limit, 10)+" bytes")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			_ = huma.WriteErr(s.api, ctx, http.StatusRequestTimeout, "the request body did not arrive in time")
			return
		}
		_ = huma.WriteErr(s.api, ctx, http.StatusBadRequest, "the request body could not be read: it ended before its declared length or its chunked encoding is malformed")
		return
	}
	// The request's own Body stays in place: net/http looks at it to
	// decide whether the connection can be kept alive.
	ctx = bodyContext{humaContext: ctx, body: io.MultiReader(bytes.NewReader(body), r.Body)}
	if int64(len(body)) > limit {
		next(ctx)
		return
	}
	if d := bodyTextError(body); d != nil {
		_ = huma.WriteErr(s.api, ctx, http.StatusUnprocessableEntity, "validation failed", d)
		return
	}
	next(ctx)
}

// encodingError refuses a body with a content coding (RFC 9110 §8.4):
// the API reads identity bodies only, so a compressed body cannot
// outgrow the body limit once decoded.
func encodingError(h http.Header) *huma.ErrorDetail {
	for _, v := range h.Values("Content-Encoding") {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return &huma.ErrorDetail{Location: "header.Content-Encoding", Message: "content coding not supported; send the body unencoded", Value: capText(v, maxValue)}
			}
		}
	}
	return nil
}

// humaContext lets bodyContext embed huma.Context without its field's
// name hiding the interface's Context method.
type humaContext = huma.Context

// bodyContext hands huma the body checkBody has already read.
type bodyContext struct {
	humaContext
	body io.Reader
}

// BodyReader returns the body, read again from its start.
func (c bodyContext) BodyReader() io.Reader { return c.body }

// Unwrap returns the wrapped context (for humago.Unwrap).
func (c bodyContext) Unwrap() huma.Context { return c.humaContext }

// printable makes s fit for a location: valid UTF-8 without NUL bytes.
func printable(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
}
