package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/computeserver/compute/client"
)

func TestNewRefusesBadURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "127.0.0.1:9000", "ftp://host", "http://user:pw@host", "http:///path"} {
		if _, err := client.New(u); err == nil {
			t.Errorf("New(%q) accepted it", u)
		}
	}
	c, err := client.New("http://127.0.0.1:9000/base/?x=1")
	if err != nil || c.BaseURL() != "http://127.0.0.1:9000/base" {
		t.Errorf("New kept %v, %v", c, err)
	}
}

// TestTaskJSON: a task read from the server keeps its type's fields, and
// writes back the same members.
func TestTaskJSON(t *testing.T) {
	t.Parallel()
	c := newClient(t, serverURL, nil)
	created, err := c.Create(t.Context(), client.TaskCreate{Type: "generation", ProviderType: "mock",
		Fields: json.RawMessage(`{"prompt":"a hat","width":64,"height":64,"seed":3}`), Priority: 7, WebhookEvents: []string{"completed"}})
	if err != nil {
		t.Fatal(err)
	}
	var prompt string
	var width int
	if ok, err := created.Field("prompt", &prompt); !ok || err != nil || prompt != "a hat" {
		t.Errorf("prompt %q %v %v", prompt, ok, err)
	}
	if ok, _ := created.Field("width", &width); !ok || width != 64 || created.Priority != 7 || created.WebhookEvents[0] != "completed" {
		t.Errorf("task %+v", created)
	}
	if _, ok := created.Fields["priority"]; ok {
		t.Error("a common field is in Fields")
	}
	req, _ := http.NewRequest(http.MethodGet, serverURL+"/api/v1/tasks/"+created.ID, nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var server, ours map[string]any
	if err := json.NewDecoder(res.Body).Decode(&server); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(t.Context(), created.ID)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &ours); err != nil {
		t.Fatal(err)
	}
	for k, v := range server {
		if k == "status" || k == "progress" || k == "updated_at" || k == "started_at" || k == "attempt" || k == "lease_expires_at" ||
			k == "executor_type" || k == "executor_instance" || k == "completed_at" || k == "result" || k == "stage" {
			continue // it runs meanwhile
		}
		if !jsonEqual(v, ours[k]) {
			t.Errorf("%s: server %v, client writes %v", k, v, ours[k])
		}
	}
}

func jsonEqual(a, b any) bool {
	ra, _ := json.Marshal(a)
	rb, _ := json.Marshal(b)
	return bytes.Equal(ra, rb)
}

func TestCreateRefusesConflictingType(t *testing.T) {
	t.Parallel()
	c := newClient(t, serverURL, nil)
	for _, in := range []client.TaskCreate{
		{Type: "echo", Fields: map[string]any{"task_type": "generation"}},
		{Fields: map[string]any{"message": "no type"}},
		{Type: "echo", Fields: []int{1}},
	} {
		if _, err := c.Create(t.Context(), in); err == nil || client.StatusOf(err) != 0 {
			t.Errorf("Create(%+v) = %v, want an error before any request", in, err)
		}
	}
	// task_type in the fields alone is enough.
	if _, err := c.Create(t.Context(), client.TaskCreate{Fields: map[string]any{"task_type": "echo", "message": "m"}}); err != nil {
		t.Error(err)
	}
}

// TestDownloadOtherOrigin: an artifact served by another host (a CDN) is
// fetched without the API key, and its checksum is checked.
func TestDownloadOtherOrigin(t *testing.T) {
	t.Parallel()
	content := []byte("the artifact's bytes")
	sum := sha256.Sum256(content)
	var auth []string
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = append(auth, r.Header.Get("Authorization"))
		_, _ = w.Write(content)
	}))
	defer cdn.Close()
	c := newClient(t, serverURL, nil)
	a := client.Artifact{Key: "tasks/x/a.bin", URL: cdn.URL + "/tasks/x/a.bin", Size: int64(len(content)), SHA256: hex.EncodeToString(sum[:])}
	var buf bytes.Buffer
	if n, err := c.Download(context.Background(), a, &buf); err != nil || n != int64(len(content)) || !bytes.Equal(buf.Bytes(), content) {
		t.Fatalf("download: %d %v %q", n, err, buf.Bytes())
	}
	a.SHA256 = strings.Repeat("0", 64)
	if _, err := c.Download(context.Background(), a, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("a wrong checksum gave %v", err)
	}
	if len(auth) != 2 || auth[0] != "" || auth[1] != "" {
		t.Errorf("the other host got Authorization %q", auth)
	}
	// A server sending more than the artifact's size is cut off.
	a.SHA256 = ""
	a.Size = 4
	if n, err := c.Download(context.Background(), a, &bytes.Buffer{}); err == nil || n != 5 || !strings.Contains(err.Error(), "want 4") {
		t.Errorf("an artifact longer than its size: %d bytes, %v", n, err)
	}
	// Another origin that wants the key (the server reached by another
	// name than its public URL) is named in the error, which stays a
	// problem.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"title":"Unauthorized","status":401,"detail":"missing API key"}`))
	}))
	defer api.Close()
	_, err := c.Download(context.Background(), client.Artifact{Key: "k", URL: api.URL + "/api/v1/artifacts/k"}, &bytes.Buffer{})
	var p *client.Problem
	if !errors.As(err, &p) || p.Status != http.StatusUnauthorized || !strings.Contains(err.Error(), "COMPUTE_PUBLIC_URL") || !strings.Contains(err.Error(), api.URL) {
		t.Errorf("a 401 from another origin: %v", err)
	}
	// A missing artifact of the API is a problem.
	_, err = c.Download(context.Background(), client.Artifact{Key: "k", URL: "/api/v1/artifacts/tasks/01939a4e-0000-7000-8000-000000000000/none.png"}, &buf)
	if !errors.As(err, &p) || p.Status != http.StatusNotFound {
		t.Errorf("missing artifact: %v", err)
	}
}
