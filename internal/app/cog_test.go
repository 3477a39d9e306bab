package app_test

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/executor/cog/cogfake"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// TestCogWebhookCrossesProcesses: with the API and the worker as separate
// processes on PostgreSQL, the Cog container's webhooks reach the API
// process and the run waiting in the worker hears them through the
// store: the task completes within seconds although its callback timeout
// is an hour (with the inboxes in each process's memory the run heard
// nothing and would have waited the hour, then reconciled). The store
// keeps the digests of the callback token and of the container's bearer
// token, neither secret.
func TestCogWebhookCrossesProcesses(t *testing.T) {
	t.Parallel()
	const secret = "cog-webhook-secret"
	container := cogfake.NewServer(cogfake.Config{RunTime: 300 * time.Millisecond, LogLines: 2, WebhookAuthToken: secret, WebhookThrottle: 50 * time.Millisecond})
	t.Cleanup(container.Close)
	if err := container.WaitHealth(t.Context(), cogfake.HealthReady); err != nil {
		t.Fatal(err)
	}
	// Every process reads one configuration: the container reaches the
	// API through a front whose target is the API process once it listens.
	var target atomic.Pointer[url.URL]
	front := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target.Load()) }})
	t.Cleanup(front.Close)

	cfg := testserver.Config(t, "postgres", key)
	settings, _ := json.Marshal(map[string]string{"url": container.URL, "callback_url": front.URL, "webhook_auth_token": secret, "callback_timeout": "1h"})
	cfg.Executors = map[string]config.ExecutorEntry{"gpu": {Type: "cog", Settings: settings}}
	cfg.Types = map[string]config.TypeEntry{"generation": {Executor: "gpu"}}
	api := cfg
	api.Workers = 0
	srv := testserver.Start(t, api, app.Options{Version: "test"}, testdb.Logger(t))
	u, _ := url.Parse(srv.Base)
	target.Store(u)
	testserver.Start(t, cfg, app.Options{Workers: true, NoAPI: true, Version: "test"}, testdb.Logger(t))

	var created struct{ ID string }
	if code := call(t, "POST", srv.Base+"/api/v1/tasks/", `{"task_type":"generation","prompt":"a dress","width":64,"height":64}`, &created); code != 201 {
		t.Fatalf("create: %d", code)
	}
	start := time.Now()
	var got struct {
		Status       string `json:"status"`
		ErrorMessage string `json:"error_message"`
	}
	for deadline := start.Add(20 * time.Second); got.Status != "completed" && got.Status != "failed"; time.Sleep(50 * time.Millisecond) {
		if code := call(t, "GET", srv.Base+"/api/v1/tasks/"+created.ID, "", &got); code != 200 || time.Now().After(deadline) {
			t.Fatalf("get: %d, status %q after %s; the run did not hear the webhooks the API process received", code, got.Status, time.Since(start).Round(time.Millisecond))
		}
	}
	if got.Status != "completed" {
		t.Fatalf("task %s: %s", got.Status, got.ErrorMessage)
	}
	t.Logf("completed %s after it was created", time.Since(start).Round(time.Millisecond))
	reqs := container.Requests()
	if len(reqs) != 1 {
		t.Errorf("the container got %d requests, want the one PUT (no reconcile)", len(reqs))
	}
	accepted := 0
	for _, d := range container.Deliveries() {
		if d.Code == http.StatusOK {
			accepted++
		}
	}
	if accepted < 2 {
		t.Errorf("%d webhooks accepted by the API process, want the progress and the end", accepted)
	}

	// At rest: the digests only.
	m := regexp.MustCompile(`/api/v1/callbacks/cog/([0-9a-f]+)"`).FindSubmatch(reqs[0].Body)
	if m == nil {
		t.Fatalf("no callback token in the PUT %s", reqs[0].Body)
	}
	db, err := sql.Open("pgx", cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tokenHash, authHash string
	var final bool
	if err := db.QueryRowContext(t.Context(), `SELECT token_hash, auth_hash, final FROM executor_inbox`).Scan(&tokenHash, &authHash, &final); err != nil {
		t.Fatal(err)
	}
	if tokenHash != sha256Hex(string(m[1])) || authHash != sha256Hex(secret) || !final {
		t.Errorf("the inbox row: token_hash %s, auth_hash %s, final %v; want the sha256 of the token and of %q, final", tokenHash, authHash, final, secret)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
