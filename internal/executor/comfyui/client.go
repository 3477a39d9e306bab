package comfyui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/computeserver/compute/internal/executor"
)

// client speaks ComfyUI's HTTP API (executors.md §1.1) to one server. Its
// errors are classified: no answer is provider_unavailable, an answer's
// status as executor.FromStatus says; each names the route.
type client struct {
	base string
	hc   *http.Client
	// observe, when set, is told each call's outcome (nil: an answer).
	observe func(err error)
}

// maxBody caps the JSON answers read; outputs (/view) have maxOutput.
const (
	maxBody   = 64 << 20
	maxOutput = 512 << 20
)

// promptRequest is POST /prompt's body (§1.2).
type promptRequest struct {
	Prompt   map[string]any `json:"prompt"`
	ClientID string         `json:"client_id"`
	PromptID string         `json:"prompt_id"`
}

// promptAnswer is POST /prompt's 200 answer (§1.2).
type promptAnswer struct {
	PromptID   string                     `json:"prompt_id"`
	Number     float64                    `json:"number"`
	NodeErrors map[string]json.RawMessage `json:"node_errors"`
}

// promptRefusal is POST /prompt's 400 answer (§1.2).
type promptRefusal struct {
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
		Details string `json:"details"`
	} `json:"error"`
	NodeErrors map[string]struct {
		Errors []struct {
			Type    string `json:"type"`
			Message string `json:"message"`
			Details string `json:"details"`
		} `json:"errors"`
		ClassType string `json:"class_type"`
	} `json:"node_errors"`
}

// String summarises the refusal: the error, then each node's errors.
func (r promptRefusal) String() string {
	parts := []string{strings.TrimSpace(r.Error.Type + ": " + r.Error.Message)}
	if r.Error.Details != "" {
		parts[0] += " (" + r.Error.Details + ")"
	}
	ids := make([]string, 0, len(r.NodeErrors))
	for id := range r.NodeErrors {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		n := r.NodeErrors[id]
		for _, e := range n.Errors {
			msg := fmt.Sprintf("node %s (%s): %s: %s", id, n.ClassType, e.Type, e.Message)
			if e.Details != "" {
				msg += ": " + e.Details
			}
			parts = append(parts, msg)
		}
	}
	return strings.Join(parts, "; ")
}

// historyEntry is one prompt of GET /history/{id} (§1.3).
type historyEntry struct {
	// Prompt is the queue item [number, prompt_id, graph, extra_data,
	// outputs_to_execute].
	Prompt  []json.RawMessage                     `json:"prompt"`
	Outputs map[string]map[string]json.RawMessage `json:"outputs"`
	Status  struct {
		StatusStr string              `json:"status_str"`
		Completed bool                `json:"completed"`
		Messages  [][]json.RawMessage `json:"messages"`
	} `json:"status"`
}

// message returns the data of the status message called name, or nil.
func (h *historyEntry) message(name string) json.RawMessage {
	for _, m := range h.Status.Messages {
		var n string
		if len(m) == 2 && json.Unmarshal(m[0], &n) == nil && n == name {
			return m[1]
		}
	}
	return nil
}

// executionSeconds is how long the server executed the prompt: from its
// execution_start message to its execution_success, whose timestamps are
// milliseconds since the epoch (§1.3, §1.6); 0 when either is missing
// or they are out of order.
func (h *historyEntry) executionSeconds() float64 {
	var start, end struct {
		Timestamp int64 `json:"timestamp"`
	}
	a, b := h.message("execution_start"), h.message("execution_success")
	if a == nil || b == nil || json.Unmarshal(a, &start) != nil || json.Unmarshal(b, &end) != nil ||
		start.Timestamp <= 0 || end.Timestamp < start.Timestamp {
		return 0
	}
	return float64(end.Timestamp-start.Timestamp) / 1000
}

// fileRef is an output file of a history entry (§1.3 outputs).
type fileRef struct {
	Filename  string `json:"filename"`
	Subfolder string `json:"subfolder"`
	Type      string `json:"type"`
}

// do sends a request and returns the answer's body when its status is
// 200; anything else is a classified error naming what was asked.
func (c *client) do(ctx context.Context, what, method, path string, body io.Reader, contentType string, limit int64) ([]byte, http.Header, error) {
	data, h, err := c.send(ctx, what, method, path, body, contentType, limit)
	if c.observe != nil && ctx.Err() == nil {
		c.observe(err)
	}
	return data, h, err
}

func (c *client) send(ctx context.Context, what, method, path string, body io.Reader, contentType string, limit int64) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, nil, executor.Errorf(executor.InvalidInput, "%s: %w", what, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, executor.FromTransport(fmt.Errorf("%s: %w", what, err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, executor.FromTransport(fmt.Errorf("%s: reading the answer: %w", what, err))
	}
	if int64(len(data)) > limit {
		return nil, nil, executor.Errorf(executor.ProviderError, "%s: the answer exceeds %d bytes", what, limit)
	}
	if resp.StatusCode != http.StatusOK {
		return data, resp.Header, executor.FromStatus(resp.StatusCode, fmt.Errorf("%s: HTTP %d: %s", what, resp.StatusCode, snippet(data)))
	}
	return data, resp.Header, nil
}

// getJSON GETs path and decodes its JSON answer into v.
func (c *client) getJSON(ctx context.Context, what, path string, v any) error {
	data, _, err := c.do(ctx, what, http.MethodGet, path, nil, "", maxBody)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return executor.Errorf(executor.ProviderError, "%s: the answer is not the JSON expected: %w", what, err)
	}
	return nil
}

// postJSON POSTs v as JSON to path and returns the answer's body.
func (c *client) postJSON(ctx context.Context, what, path string, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, executor.Errorf(executor.InvalidInput, "%s: encoding the body: %w", what, err)
	}
	data, _, err := c.do(ctx, what, http.MethodPost, path, bytes.NewReader(body), "application/json", maxBody)
	return data, err
}

// systemStats is the health probe: GET /system_stats answers 200 (§1.1).
func (c *client) systemStats(ctx context.Context) error {
	var v map[string]json.RawMessage
	return c.getJSON(ctx, "GET /system_stats", "/system_stats", &v)
}

// submit POSTs a prompt (§1.2). A 400 is invalid input carrying the
// server's error and node errors.
func (c *client) submit(ctx context.Context, p promptRequest) (promptAnswer, error) {
	data, err := c.postJSON(ctx, "POST /prompt", "/prompt", p)
	if err != nil {
		var refusal promptRefusal
		if executor.Is(err, executor.InvalidInput) && json.Unmarshal(data, &refusal) == nil && refusal.Error.Type != "" {
			return promptAnswer{}, executor.Errorf(executor.InvalidInput, "POST /prompt refused the workflow: %s", refusal)
		}
		return promptAnswer{}, err
	}
	var a promptAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return promptAnswer{}, executor.Errorf(executor.ProviderError, "POST /prompt: the answer is not the JSON expected: %w", err)
	}
	return a, nil
}

// history returns the prompt's history entry, or nil when the server has
// none (still queued or running, or unknown: §1.8 #3331).
func (c *client) history(ctx context.Context, id string) (*historyEntry, error) {
	var all map[string]*historyEntry
	if err := c.getJSON(ctx, "GET /history", "/history/"+url.PathEscape(id), &all); err != nil {
		return nil, err
	}
	return all[id], nil
}

// queued reports where the prompt is in GET /queue (§1.1): running,
// pending, or neither.
func (c *client) queued(ctx context.Context, id string) (running, pending bool, err error) {
	var q struct {
		Running [][]json.RawMessage `json:"queue_running"`
		Pending [][]json.RawMessage `json:"queue_pending"`
	}
	if err := c.getJSON(ctx, "GET /queue", "/queue", &q); err != nil {
		return false, false, err
	}
	has := func(items [][]json.RawMessage) bool {
		for _, it := range items {
			var pid string
			if len(it) > 1 && json.Unmarshal(it[1], &pid) == nil && pid == id {
				return true
			}
		}
		return false
	}
	return has(q.Running), has(q.Pending), nil
}

// deleteQueued removes a pending prompt (POST /queue {"delete"}, §1.1).
func (c *client) deleteQueued(ctx context.Context, id string) error {
	_, err := c.postJSON(ctx, "POST /queue", "/queue", map[string]any{"delete": []string{id}})
	return err
}

// interrupt interrupts the prompt if it is the one running (POST
// /interrupt {"prompt_id"}, §1.1).
func (c *client) interrupt(ctx context.Context, id string) error {
	_, err := c.postJSON(ctx, "POST /interrupt", "/interrupt", map[string]string{"prompt_id": id})
	return err
}

// upload stores an input image (POST /upload/image, §1.1) and returns the
// name the server chose, which differs from filename on a collision
// (§1.8).
func (c *client) upload(ctx context.Context, filename string, data []byte) (string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	part, err := mw.CreateFormFile("image", filename)
	if err == nil {
		_, err = part.Write(data)
	}
	if err == nil {
		err = mw.WriteField("type", "input")
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return "", fmt.Errorf("POST /upload/image: encoding the form: %w", err)
	}
	answer, _, err := c.do(ctx, "POST /upload/image", http.MethodPost, "/upload/image", &buf, mw.FormDataContentType(), maxBody)
	if err != nil {
		return "", err
	}
	var up struct {
		Name      string `json:"name"`
		Subfolder string `json:"subfolder"`
	}
	if err := json.Unmarshal(answer, &up); err != nil || up.Name == "" {
		return "", executor.Errorf(executor.ProviderError, "POST /upload/image: no name in the answer %s", snippet(answer))
	}
	if up.Subfolder != "" {
		return up.Subfolder + "/" + up.Name, nil
	}
	return up.Name, nil
}

// view downloads an output file (GET /view, §1.1).
func (c *client) view(ctx context.Context, f fileRef) ([]byte, string, error) {
	q := url.Values{"filename": {f.Filename}, "subfolder": {f.Subfolder}, "type": {f.Type}}
	data, h, err := c.do(ctx, "GET /view "+f.Filename, http.MethodGet, "/view?"+q.Encode(), nil, "", maxOutput)
	if err != nil {
		return nil, "", err
	}
	return data, h.Get("Content-Type"), nil
}

// snippet is the start of an answer's body for an error message.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}
