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

// apiClient creates echo tasks through a `compute api` process.
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

// create posts the task rec describes (its message, sleep, priority and
// attempts; the API picks the id) and returns the new task's id.
func (a *apiClient) create(ctx context.Context, rec *store.Record) (uuid.UUID, error) {
	f := rec.Fields.(*echo.Fields)
	body, err := json.Marshal(map[string]any{
		"message": f.Message, "sleep_ms": f.SleepMS,
		"priority": rec.Task.Priority, "max_attempts": rec.Task.MaxAttempts,
	})
	if err != nil {
		return uuid.Nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/api/v1/tasks/"+echo.Name, bytes.NewReader(body))
	if err != nil {
		return uuid.Nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return uuid.Nil, fmt.Errorf("creating a task: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return uuid.Nil, fmt.Errorf("creating a task: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return uuid.Nil, fmt.Errorf("creating a task: %s: %s", resp.Status, raw)
	}
	var out struct {
		ID uuid.UUID `json:"id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return uuid.Nil, fmt.Errorf("creating a task: decoding %s: %w", raw, err)
	}
	return out.ID, nil
}
