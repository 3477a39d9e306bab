package falfake_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor/fal/falfake"
	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// TestStorage: a storage token needs the fal key; an upload needs an
// unexpired token; the bytes are served at the access_url and readable by
// Uploaded; the knobs fail the next token or upload.
func TestStorage(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{Keys: []string{key}, MaxUploadBytes: 10})
	tokenURL := s.URL + "/storage/auth/token?storage_type=fal-cdn-v3"
	if c := do(t, http.MethodPost, tokenURL, "", "{}"); c.Code != http.StatusUnauthorized {
		t.Fatalf("token without a key: %d, want 401", c.Code)
	}
	c := do(t, http.MethodPost, tokenURL, key, "{}", "Content-Type", "application/json")
	if c.Code != http.StatusOK {
		t.Fatalf("token: %d %s", c.Code, c.Body)
	}
	tok := c.JSON(t)
	exp, err := time.Parse(time.RFC3339Nano, tok["expires_at"].(string))
	if tok["token_type"] != "Bearer" || tok["base_url"] != s.URL || err != nil || time.Until(exp) < 50*time.Minute {
		t.Fatalf("token answer %v (%v)", tok, err)
	}
	auth := "Bearer " + tok["token"].(string)
	upload := func(auth, body string) fakekit.Call {
		return fakekit.Do(t, http.MethodPost, s.URL+"/files/upload", body,
			"Authorization", auth, "Content-Type", "text/plain", "X-Fal-File-Name", "a.txt")
	}
	if c := upload("Key "+key, "hello"); c.Code != http.StatusUnauthorized {
		t.Errorf("upload with the fal key instead of a token: %d, want 401", c.Code)
	}
	c = upload(auth, "hello")
	if c.Code != http.StatusOK {
		t.Fatalf("upload: %d %s", c.Code, c.Body)
	}
	url := c.JSON(t)["access_url"].(string)
	if got := fakekit.Do(t, http.MethodGet, url, ""); got.Code != http.StatusOK || string(got.Body) != "hello" || got.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("GET access_url: %d %q %s", got.Code, got.Body, got.Header.Get("Content-Type"))
	}
	if data, ok := s.Uploaded(url); !ok || string(data) != "hello" {
		t.Errorf("Uploaded: %q %v", data, ok)
	}
	if c := upload(auth, "more than ten bytes"); c.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("upload over MaxUploadBytes: %d, want 413", c.Code)
	}
	s.FailNextUpload(1, http.StatusTooManyRequests)
	if c := upload(auth, "x"); c.Code != http.StatusTooManyRequests || c.Header.Get("Retry-After") == "" {
		t.Errorf("injected 429: %d (Retry-After %q)", c.Code, c.Header.Get("Retry-After"))
	}
	s.FailNextToken(1, http.StatusServiceUnavailable)
	if c := do(t, http.MethodPost, tokenURL, key, "{}"); c.Code != http.StatusServiceUnavailable {
		t.Errorf("injected token 503: %d", c.Code)
	}
	s.ExpireTokens()
	if c := upload(auth, "x"); c.Code != http.StatusUnauthorized {
		t.Errorf("upload with an expired token: %d, want 401", c.Code)
	}
	ups := s.Uploads()
	if len(ups) != 5 || ups[1].Code != http.StatusOK || ups[1].Name != "a.txt" || ups[1].Size != 5 || ups[1].URL != url {
		t.Errorf("uploads %+v", ups)
	}
	if s.Tokens() != 1 {
		t.Errorf("%d tokens issued, want 1", s.Tokens())
	}
}
