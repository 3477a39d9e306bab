package replicatefake_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"testing"

	"github.com/computeserver/compute/internal/executor/replicate/replicatefake"
)

// multipartFile is a POST /v1/files body: the content part (as
// replicate-go's createFile writes it) and metadata.
func multipartFile(t *testing.T, part string, data []byte) (body, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="`+part+`"; filename="hello.txt"`)
	h.Set("Content-Type", "text/plain")
	w, err := mw.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(data)
	_ = mw.WriteField("metadata", `{"foo":"bar"}`)
	_ = mw.Close()
	return buf.String(), mw.FormDataContentType()
}

// TestFiles: POST /v1/files needs the token, answers 201 with the file
// object of the recorded exchange, GET urls.get answers it again, the
// bytes are readable through Uploaded, DELETE removes it; the knobs fail
// the next upload or refuse a large one.
func TestFiles(t *testing.T) {
	t.Parallel()
	s := start(t, replicatefake.Config{Token: "tok", MaxFileBytes: 20})
	body, ct := multipartFile(t, "content", []byte("Hello, world!"))
	if c := do(t, http.MethodPost, s.URL+"/v1/files", "", body, "Content-Type", ct); c.Code != http.StatusUnauthorized {
		t.Fatalf("upload without a token: %d, want 401", c.Code)
	}
	c := do(t, http.MethodPost, s.URL+"/v1/files", "tok", body, "Content-Type", ct)
	if c.Code != http.StatusCreated {
		t.Fatalf("upload: %d %s", c.Code, c.Body)
	}
	obj := c.JSON(t)
	sum := sha256.Sum256([]byte("Hello, world!"))
	urls, _ := obj["urls"].(map[string]any)
	get, _ := urls["get"].(string)
	checks, _ := obj["checksums"].(map[string]any)
	meta, _ := obj["metadata"].(map[string]any)
	if obj["name"] != "hello.txt" || obj["content_type"] != "text/plain" || obj["size"] != 13.0 ||
		checks["sha256"] != hex.EncodeToString(sum[:]) || meta["foo"] != "bar" || get != s.URL+"/v1/files/"+obj["id"].(string) || obj["expires_at"] == nil {
		t.Fatalf("file object %v", obj)
	}
	if g := do(t, http.MethodGet, get, "tok", ""); g.Code != http.StatusOK || g.JSON(t)["id"] != obj["id"] {
		t.Errorf("GET urls.get: %d %s", g.Code, g.Body)
	}
	if data, ok := s.Uploaded(get); !ok || string(data) != "Hello, world!" {
		t.Errorf("Uploaded: %q %v", data, ok)
	}
	if b, ct := multipartFile(t, "file", []byte("x")); do(t, http.MethodPost, s.URL+"/v1/files", "tok", b, "Content-Type", ct).Code != http.StatusBadRequest {
		t.Errorf("upload without a content part: want 400")
	}
	if b, ct := multipartFile(t, "content", make([]byte, 21)); do(t, http.MethodPost, s.URL+"/v1/files", "tok", b, "Content-Type", ct).Code != http.StatusRequestEntityTooLarge {
		t.Errorf("upload over MaxFileBytes: want 413")
	}
	s.FailNextFiles(1, http.StatusTooManyRequests)
	if c := do(t, http.MethodPost, s.URL+"/v1/files", "tok", body, "Content-Type", ct); c.Code != http.StatusTooManyRequests || c.Header.Get("Retry-After") != "1" {
		t.Errorf("injected 429: %d (Retry-After %q)", c.Code, c.Header.Get("Retry-After"))
	}
	if d := do(t, http.MethodDelete, get, "tok", ""); d.Code != http.StatusNoContent {
		t.Errorf("DELETE: %d", d.Code)
	}
	if _, ok := s.Uploaded(get); ok || do(t, http.MethodGet, get, "tok", "").Code != http.StatusNotFound {
		t.Errorf("a deleted file is still there")
	}
	if ups := s.FileUploads(); len(ups) != 4 || ups[0].Code != http.StatusCreated || ups[0].Size != 13 {
		t.Errorf("uploads %+v", ups)
	}
}
