package api_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/config"
)

// TestRoutesMatchExactly: unknown routes and wrong methods are problem+json
// 404 and 405 (with Allow listing only methods that really serve the path);
// the list and create routes do not swallow the paths below them.
func TestRoutesMatchExactly(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite", func(c *config.Config) { c.Workers = 0 })
	id := e.must(201, "POST", "/api/v1/tasks/echo", map[string]any{"message": "m", "run_at": "2099-01-01T00:00:00Z"})["id"].(string)
	task := "/api/v1/tasks/" + id
	cases := []struct {
		name, method, path string
		status             int
		allow              string
	}{
		{"unknown route", "GET", "/nope", 404, ""},
		{"unknown api route", "GET", "/api/v1/nope", 404, ""},
		{"below the list", "GET", "/api/v1/tasks/foo/bar/baz", 404, ""},
		{"below the list, other method", "PUT", "/api/v1/tasks/foo/bar/baz", 404, ""},
		{"cancel with a trailing slash", "POST", task + "/cancel/", 404, ""},
		{"retry with a trailing slash", "POST", task + "/retry/", 404, ""},
		{"get with a trailing slash", "GET", task + "/", 404, ""},
		{"wrong method on the collection", "DELETE", "/api/v1/tasks/", 405, "GET, HEAD, POST"},
		// POST /api/v1/tasks/{x} is the create of a (here unknown) type.
		{"wrong method on a task", "PUT", task, 405, "DELETE, GET, HEAD, PATCH, POST"},
		// GET /api/v1/tasks/{x}/{y} is the typed get.
		{"wrong method on cancel", "PUT", task + "/cancel", 405, "GET, HEAD, POST"},
		{"wrong method on health", "POST", "/healthz", 405, "GET, HEAD"},
	}
	for _, tc := range cases {
		r := e.do(tc.method, tc.path, map[string]any{"task_type": "echo", "message": "must not be created"})
		t.Run(tc.name, func(t *testing.T) {
			problemAt(t, r, tc.status, "")
			if got := r.header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
	if items := e.must(200, "GET", "/api/v1/tasks/", nil)["items"].([]any); len(items) != 1 {
		t.Errorf("%d tasks, want 1: a request to an unknown route created a task", len(items))
	}
	if got := e.must(200, "GET", task, nil)["status"]; got != "pending" {
		t.Errorf("status %v after requests to unknown routes, want pending", got)
	}
	// A path that only lacks the collection's slash is still redirected.
	req, _ := http.NewRequest("GET", e.base+"/api/v1/tasks", nil)
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTemporaryRedirect || res.Header.Get("Location") != "/api/v1/tasks/" {
		t.Errorf("GET /api/v1/tasks: %d to %q, want 307 to /api/v1/tasks/", res.StatusCode, res.Header.Get("Location"))
	}
}

// rawRequest writes req on a new TCP connection and returns the response.
// With closeWrite it then closes its write side, so the server sees the
// body end (and cancels the request's context, the client being gone).
func rawRequest(t *testing.T, base, req string, closeWrite bool) response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: body}
}

// TestUnreadableBodies: a body that ends before its Content-Length, or
// whose chunked encoding is malformed, is a 400 problem (was 500), and
// creates nothing.
func TestUnreadableBodies(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		body := `{"task_type":"echo","message":"hello"}`
		head := "POST /api/v1/tasks/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + adminKey + "\r\nContent-Type: application/json\r\n"
		cases := map[string]string{
			"truncated":         head + "Content-Length: 500\r\n\r\n" + body,
			"bad chunk size":    head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n" + body + "\r\n0\r\n\r\n",
			"chunk too short":   head + "Transfer-Encoding: chunked\r\n\r\n100\r\n" + body + "\r\n0\r\n\r\n",
			"no final chunk":    head + "Transfer-Encoding: chunked\r\n\r\n26\r\n" + body + "\r\n",
			"patch truncated":   "PATCH /api/v1/tasks/01a219db-3e96-7ead-9359-7651978f18c0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + adminKey + "\r\nContent-Length: 500\r\n\r\n{}",
			"typed create, cut": strings.Replace(head, "/api/v1/tasks/", "/api/v1/tasks/echo", 1) + "Content-Length: 500\r\n\r\n{",
		}
		for name, req := range cases {
			r := rawRequest(t, e.base, req, true)
			t.Run(name, func(t *testing.T) { problemAt(t, r, 400, "") })
		}
		// The same request, whole, is accepted.
		ok := rawRequest(t, e.base, head+"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n26\r\n"+body+"\r\n0\r\n\r\n", false)
		if ok.status != 201 {
			t.Fatalf("a well-formed chunked create: %d %s", ok.status, ok.body)
		}
		if items := e.must(200, "GET", "/api/v1/tasks/", nil)["items"].([]any); len(items) != 1 {
			t.Errorf("%d tasks, want only the well-formed one", len(items))
		}
	})
}
