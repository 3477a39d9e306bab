package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// apiKey is the admin key of the suite's servers.
const apiKey = "conformance-admin-key-0123456789"

// server is one real compute process (app.New + Serve) on a loopback
// port, with its own database.
type server struct {
	base   string
	app    *app.App
	client *http.Client
}

// startServer runs the server wiring for the task types register adds,
// with workers, on a fresh database of the dialect; it stops when the
// test ends.
func startServer(t *testing.T, dialect string, register app.RegisterFunc) *server {
	t.Helper()
	s := testserver.Start(t, testserver.Config(t, dialect, apiKey),
		app.Options{Register: register, Workers: true, Version: "conformance"}, testdb.Logger(t))
	return &server{base: s.Base, app: s.App, client: &http.Client{Timeout: 30 * time.Second}}
}

// reply is an HTTP answer.
type reply struct {
	status int
	body   []byte
}

// object decodes the body as a JSON object.
func (r reply) object() (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		return nil, fmt.Errorf("decoding %q: %w", r.body, err)
	}
	return m, nil
}

// call sends a request with the admin key; body, when not nil, is sent as
// JSON.
func (s *server) call(ctx context.Context, method, path string, body any) (reply, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := s.client.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return reply{status: res.StatusCode, body: raw}, nil
}

// expect sends a request and decodes the JSON object it answers, failing
// unless the status is want.
func (s *server) expect(ctx context.Context, want int, method, path string, body any) (map[string]any, error) {
	r, err := s.call(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	if r.status != want {
		return nil, fmt.Errorf("%s %s answered %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r.object()
}
