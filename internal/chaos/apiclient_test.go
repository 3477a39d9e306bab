//go:build unix

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/tasks/echo"
)

// apiClient calls a `compute api` process.
type apiClient struct {
	base, key string
	hc        *http.Client
}

func newAPIClient(addr, key string) *apiClient {
	return &apiClient{base: "http://" + addr, key: key, hc: &http.Client{
		Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4},
	}}
}

// close drops the client's idle connections (and their goroutines).
func (a *apiClient) close() { a.hc.CloseIdleConnections() }

// call sends body (nil: none) as JSON to path with the client's key and
// returns the answer's status and body.
func (a *apiClient) call(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("%s %s: encoding the body: %w", method, path, err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return resp.StatusCode, raw, nil
}

// create posts the task rec describes (its message, sleep, priority and
// attempts; the API picks the id) and returns the new task's id.
func (a *apiClient) create(ctx context.Context, rec *store.Record) (uuid.UUID, error) {
	f := rec.Fields.(*echo.Fields)
	status, raw, err := a.call(ctx, http.MethodPost, "/api/v1/tasks/"+echo.Name, map[string]any{
		"message": f.Message, "sleep_ms": f.SleepMS,
		"priority": rec.Task.Priority, "max_attempts": rec.Task.MaxAttempts,
	})
	if err != nil {
		return uuid.Nil, fmt.Errorf("creating a task: %w", err)
	}
	if status != http.StatusCreated {
		return uuid.Nil, fmt.Errorf("creating a task: %d: %s", status, raw)
	}
	var out struct {
		ID uuid.UUID `json:"id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return uuid.Nil, fmt.Errorf("creating a task: decoding %s: %w", raw, err)
	}
	return out.ID, nil
}
