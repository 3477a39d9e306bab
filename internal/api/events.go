package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/stream"
	"github.com/computeserver/compute/internal/task"
)

// sseWriteTimeout bounds one write to a stream's client: a client that
// reads nothing for this long is disconnected.
const sseWriteTimeout = 30 * time.Second

// registerEventRoutes serves the Server-Sent Event streams. They are plain
// handlers on the mux (a stream is not a request/response operation),
// authenticated like every route and documented in the OpenAPI document by
// hand.
func (s *Server) registerEventRoutes() {
	body := s.api.OpenAPI().Components.Schemas.Schema(reflect.TypeFor[event.Body](), true, "")
	zero, explode := 0.0, true
	after := []*huma.Param{
		{Name: "Last-Event-ID", In: "header", Schema: &huma.Schema{Type: huma.TypeString},
			Description: "The `id:` of the last event received; the stream replays every later event from the database first. Sent by EventSource on reconnect; wins over `after`."},
		{Name: "after", In: "query", Schema: &huma.Schema{Type: huma.TypeInteger, Format: "int64", Minimum: &zero},
			Description: "Start after this event id (like Last-Event-ID)."},
	}
	streamResponse := func(what string) map[string]*huma.Response {
		return map[string]*huma.Response{
			"200": {Description: "A `text/event-stream`: per event, `id:` (the event id, increasing), `event:` (the event_type, e.g. `echo_status_update`) and `data:` (the EventBody JSON, the webhook body). " +
				what + " Comments (`: keep-alive`) are sent while idle, every `COMPUTE_SSE_KEEPALIVE` (15 s by default).",
				Content: map[string]*huma.MediaType{"text/event-stream": {Schema: body}}},
			"401": {Description: "Missing or invalid API key."},
			"422": {Description: "A bad filter or position."},
			"429": {Description: "The key holds as many open streams (`COMPUTE_SSE_MAX_STREAMS_PER_KEY`), or as many replaying ones (`COMPUTE_SSE_MAX_REPLAYS_PER_KEY`), as it may, or the server has as many streams replaying the log as it allows (`COMPUTE_SSE_MAX_REPLAYS`); retry after `Retry-After` seconds."},
			"503": {Description: "This process does not serve event streams."},
		}
	}
	taskResponses := streamResponse("The stream ends after the task's terminal status event (completed, failed or cancelled), or at once when the task is already terminal and nothing is left to replay.")
	taskResponses["404"] = &huma.Response{Description: "No such task (or another tenant's)."}
	s.api.OpenAPI().AddOperation(&huma.Operation{
		OperationID: "stream-task-events", Method: http.MethodGet, Path: "/api/v1/tasks/{task_id}/events", Tags: []string{"Events"},
		Summary: "Stream a task's events (SSE)",
		Description: "Every event of the task, from its creation (or after `Last-Event-ID` / `after`), each exactly once and in id order: " +
			"missed events are replayed from the database, then the stream continues live.",
		Security: bearer,
		Parameters: append([]*huma.Param{
			{Name: "task_id", In: "path", Required: true, Schema: &huma.Schema{Type: huma.TypeString, Format: "uuid"}},
		}, after...),
		Responses: taskResponses,
	})
	s.api.OpenAPI().AddOperation(&huma.Operation{
		OperationID: "stream-events", Method: http.MethodGet, Path: "/api/v1/events", Tags: []string{"Events"},
		Summary: "Stream every task's events (SSE firehose)",
		Description: "Live events of every task the key can see, from now (or after `Last-Event-ID` / `after`, replayed from the database), each exactly once and in id order. " +
			"A tenant key sees only its tenant's events.",
		Security: bearer,
		Parameters: append([]*huma.Param{
			{Name: "task_type", In: "query", Explode: &explode, Schema: &huma.Schema{Type: huma.TypeArray, Items: &huma.Schema{Type: huma.TypeString}},
				Description: "Only events of tasks of these types (repeat the parameter for several)."},
			{Name: "status", In: "query", Explode: &explode, Schema: &huma.Schema{Type: huma.TypeArray, Items: &huma.Schema{Ref: refPrefix + statusSchemaName}},
				Description: "Only events whose task status is one of these (progress events have status executing; repeat the parameter for several)."},
			{Name: "origin_tenant_id", In: "query", Schema: &huma.Schema{Type: huma.TypeString}, Description: "Only events of this tenant's tasks (a tenant key may name only its own)."},
		}, after...),
		Responses: streamResponse("The stream does not end by itself."),
	})
	s.mux.HandleFunc("GET /api/v1/tasks/{task_id}/events", s.serveTaskEvents)
	s.mux.HandleFunc("GET /api/v1/events", s.serveEvents)
}

// authorize authenticates a raw handler's request, writing the problem
// when it fails.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (principal, bool) {
	p, status, msg := s.resolve(r.Context(), r.Header.Get("Authorization"))
	if status != 0 {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="compute"`)
		}
		writeProblem(w, status, msg, nil)
		return principal{}, false
	}
	return p, true
}

// streamPosition reads Last-Event-ID (which wins, being newer) or ?after=;
// -1 when neither is given.
func streamPosition(r *http.Request) (int64, *huma.ErrorDetail) {
	if v := strings.TrimSpace(r.Header.Get("Last-Event-ID")); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, &huma.ErrorDetail{Location: "header.Last-Event-ID", Message: "want an event id (an integer >= 0)", Value: v}
		}
		return n, nil
	}
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, &huma.ErrorDetail{Location: "query.after", Message: "want an event id (an integer >= 0)", Value: v}
		}
		return n, nil
	}
	return -1, nil
}

func (s *Server) serveTaskEvents(w http.ResponseWriter, r *http.Request) {
	p, ok := s.authorize(w, r)
	if !ok {
		return
	}
	id, ok := canonicalUUID(r.PathValue("task_id"))
	if !ok {
		writeProblem(w, http.StatusNotFound, "task not found", nil)
		return
	}
	after, bad := streamPosition(r)
	if bad != nil {
		writeProblem(w, http.StatusUnprocessableEntity, "validation failed", []*huma.ErrorDetail{bad})
		return
	}
	rec, err := s.deps.Store.GetTask(r.Context(), id, p.scope())
	if err != nil {
		if errors.Is(err, task.ErrNotFound) {
			writeProblem(w, http.StatusNotFound, "task not found", nil)
			return
		}
		writeError(w, s.problem(err, "task"))
		return
	}
	f := stream.Filter{Scope: p.scope(), TaskID: id}
	if after < 0 {
		after = 0 // a task's stream starts at its creation
	}
	// A task that was terminal when we looked has its terminal event in
	// the log: if nothing follows the client's position, the client has
	// it, and the stream is over.
	s.serveStream(w, r, p, f, after, true, rec.Task.Status.Terminal())
}

func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	p, ok := s.authorize(w, r)
	if !ok {
		return
	}
	after, bad := streamPosition(r)
	q := r.URL.Query()
	f := stream.Filter{Scope: p.scope(), TaskTypes: nonEmpty(q["task_type"]), TenantID: q.Get("origin_tenant_id")}
	var details []*huma.ErrorDetail
	if bad != nil {
		details = append(details, bad)
	}
	if d := s.unknownTypes(withoutWorkflows(f.TaskTypes)); d != nil {
		details = append(details, d)
	}
	for _, v := range nonEmpty(q["status"]) {
		st, err := task.ParseStatus(v)
		if err != nil {
			details = append(details, &huma.ErrorDetail{Location: "query.status", Message: "want pending, executing, completed, failed or cancelled", Value: v})
			break
		}
		f.Statuses = append(f.Statuses, st)
	}
	if len(f.TenantID) > 256 {
		details = append(details, &huma.ErrorDetail{Location: "query.origin_tenant_id", Message: "at most 256 characters"})
	} else if d := foreignTenant(p, "query.origin_tenant_id", f.TenantID); d != nil {
		details = append(details, d)
	}
	if len(details) > 0 {
		writeProblem(w, http.StatusUnprocessableEntity, "validation failed", details)
		return
	}
	s.serveStream(w, r, p, f, after, false, false)
}

// nonEmpty returns the values of a repeated query parameter, without empty
// ones (nil when none is left).
func nonEmpty(values []string) []string {
	var out []string
	for _, v := range values {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// serveStream writes the events matching f after the position (-1: from
// now) as Server-Sent Events until the client leaves, the server stops,
// or (taskStream) the task's terminal event has been sent; endIfQuiet ends
// it at once if there is nothing to replay. A key holds at most
// MaxStreamsPerKey streams, and at most MaxReplaysPerKey firehose streams
// replaying the log (MaxReplays for every key together) (a task's own replay is one indexed read and not
// counted); over either, the answer is 429.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, p principal, f stream.Filter, after int64, taskStream, endIfQuiet bool) {
	relay := s.deps.Events
	if relay == nil {
		writeProblem(w, http.StatusServiceUnavailable, "this process does not serve event streams", nil)
		return
	}
	ctx := r.Context()
	release, ok := s.streams.stream(p.keyID)
	if !ok {
		writeTooMany(w, "this API key has too many open event streams")
		return
	}
	defer release()
	endReplay := func() {}
	if !taskStream && after >= 0 {
		if endReplay, ok = s.streams.replay(p.keyID); !ok {
			writeTooMany(w, "too many event streams are replaying the log, of this API key or of this server")
			return
		}
		defer endReplay()
	}
	fw, err := relay.Follow(ctx, f, after)
	if err != nil {
		if errors.Is(err, stream.ErrStopped) {
			writeProblem(w, http.StatusServiceUnavailable, "the server is shutting down", nil)
			return
		}
		s.log.Error("starting an event stream", "error", err)
		writeProblem(w, http.StatusServiceUnavailable, "cannot start the event stream right now", nil)
		return
	}
	defer fw.Close()
	fw.OnCaughtUp(endReplay)

	rc := http.NewResponseController(w)
	// The server's read timeout would end a long stream; its requests
	// have no body, so there is nothing to guard.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // no proxy buffering
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: rc}
	if err := sw.flush(); err != nil || endIfQuiet && !s.hasEvents(ctx, f, fw.Last()) {
		return
	}

	keepAlive := relay.Config().KeepAlive
	ticker := time.NewTicker(keepAlive)
	defer ticker.Stop()
	for {
		evs, err := fw.Next(ctx, ticker.C)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, stream.ErrStopped) {
				s.log.Warn("event stream ended", "error", err)
			}
			return
		}
		if evs == nil {
			sw.comment("keep-alive")
		}
		end := false
		for _, e := range evs {
			sw.event(e)
			if taskStream && e.Kind == event.KindStatus && e.Status.Terminal() {
				end = true
				break
			}
		}
		if err := sw.flush(); err != nil || end {
			return
		}
	}
}

// hasEvents reports whether the log holds events for f after an id (true
// on errors, so the stream goes on and the follower reports them).
func (s *Server) hasEvents(ctx context.Context, f stream.Filter, after int64) bool {
	evs, err := s.deps.Store.ListEvents(ctx, f.EventFilter(after, 1))
	return err != nil || len(evs) > 0
}

// sseWriter buffers the lines of a batch and writes them in one go.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
}

// event writes one event: id, event type and the body as data. Bodies are
// one line of JSON; one with line breaks is compacted first.
func (sw *sseWriter) event(e event.Event) {
	sw.buf.WriteString("id: ")
	sw.buf.WriteString(strconv.FormatInt(e.ID, 10))
	sw.buf.WriteString("\nevent: ")
	sw.buf.WriteString(e.EventType)
	sw.buf.WriteString("\ndata: ")
	if bytes.ContainsAny(e.Body, "\r\n") {
		var c bytes.Buffer
		if err := json.Compact(&c, e.Body); err == nil {
			sw.buf.Write(c.Bytes())
		} else {
			sw.buf.WriteString(strings.NewReplacer("\r", "", "\n", " ").Replace(string(e.Body)))
		}
	} else {
		sw.buf.Write(e.Body)
	}
	sw.buf.WriteString("\n\n")
}

// comment writes an SSE comment line.
func (sw *sseWriter) comment(text string) {
	sw.buf.WriteString(": ")
	sw.buf.WriteString(text)
	sw.buf.WriteString("\n\n")
}

// flush sends what is buffered to the client now.
func (sw *sseWriter) flush() error {
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if sw.buf.Len() > 0 {
		if _, err := sw.w.Write(sw.buf.Bytes()); err != nil {
			return err
		}
		sw.buf.Reset()
	}
	return sw.rc.Flush()
}
