package api_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawRequest writes req on a fresh connection and reads the answer, so a
// test can declare a body it never sends.
func (e *env) rawRequest(req string) *http.Response {
	e.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	// A bound for a broken server, not a performance assertion.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write([]byte(req)); err != nil {
		e.t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// A body whose declared length is over the limit is refused at once with
// a 413, without waiting for a body that may never come.
func TestDeclaredBodyTooLarge(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite")
	for _, route := range []string{"POST /api/v1/tasks/", "POST /api/v1/tasks/echo"} {
		res := e.rawRequest(route + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + adminKey +
			"\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{")
		if res.StatusCode != http.StatusRequestEntityTooLarge || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s: status %d %q, want 413 problem", route, res.StatusCode, res.Header.Get("Content-Type"))
		}
		res.Body.Close()
	}
	// A chunked body over the limit is still measured as it streams.
	big := `{"task_type":"echo","message":"` + strings.Repeat("a", 2<<20) + `"}`
	problemAt(t, e.do("POST", "/api/v1/tasks/", big, "Transfer-Encoding", "chunked"), 413, "")
	e.must(201, "POST", "/api/v1/tasks/", `{"task_type":"echo","message":"small"}`)
}

// A body with a content coding is refused with a 415 naming the header:
// the API reads identity bodies only.
func TestContentEncodingRefused(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`{"task_type":"echo","message":"zipped"}`))
	_ = zw.Close()
	for _, enc := range []string{"gzip", "br", "deflate, gzip", "x-unknown"} {
		r := e.do("POST", "/api/v1/tasks/", gz.Bytes(), "Content-Encoding", enc)
		problemAt(t, r, http.StatusUnsupportedMediaType, "header.Content-Encoding")
		if got := r.header.Get("Accept-Encoding"); got != "identity" {
			t.Errorf("%s: Accept-Encoding %q, want identity", enc, got)
		}
	}
	created := e.must(201, "POST", "/api/v1/tasks/echo", `{"message":"plain","run_at":"2099-01-01T00:00:00Z"}`, "Content-Encoding", "identity")
	id := created["id"].(string)
	problemAt(t, e.do("PATCH", "/api/v1/tasks/"+id, gz.Bytes(), "Content-Encoding", "gzip"), 415, "header.Content-Encoding")
}
