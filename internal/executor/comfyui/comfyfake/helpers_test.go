package comfyfake

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// msg is one decoded websocket message.
type msg struct {
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
}

func doJSON(t *testing.T, method, url string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

func getJSON(t *testing.T, url string, into any) int {
	t.Helper()
	status, body := doJSON(t, http.MethodGet, url, nil)
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, body)
		}
	}
	return status
}

// submit posts a prompt and returns its id, failing unless it is accepted.
func submit(t *testing.T, base string, body map[string]any) string {
	t.Helper()
	status, data := doJSON(t, http.MethodPost, base+"/prompt", body)
	if status != http.StatusOK {
		t.Fatalf("POST /prompt: %d %s", status, data)
	}
	var resp struct {
		PromptID string `json:"prompt_id"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		t.Fatal(err)
	}
	return resp.PromptID
}

func dial(t *testing.T, base, clientID string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(base, "http") + "/ws"
	if clientID != "" {
		u += "?clientId=" + clientID
	}
	c, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatalf("dialing %s: %v", u, err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func read(t *testing.T, c *websocket.Conn) msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("reading websocket: %v", err)
	}
	var m msg
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	return m
}

// readUntilDone reads until the done marker executing{node:null} of id.
func readUntilDone(t *testing.T, c *websocket.Conn, id string) []msg {
	t.Helper()
	var out []msg
	for {
		m := read(t, c)
		out = append(out, m)
		if m.Type == "executing" && m.Data["node"] == nil && m.Data["prompt_id"] == id {
			return out
		}
	}
}

// readUntil reads until a message of type typ and returns it.
func readUntil(t *testing.T, c *websocket.Conn, typ string) msg {
	t.Helper()
	for {
		if m := read(t, c); m.Type == typ {
			return m
		}
	}
}

func types(ms []msg) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Type
	}
	return out
}

// upload posts a multipart /upload/image.
func upload(t *testing.T, base, filename string, data []byte, fields map[string]string) (int, map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if filename != "-" {
		fw, err := mw.CreateFormFile("image", filename)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/upload/image", mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("upload response %s: %v", body, err)
		}
	}
	return resp.StatusCode, out
}

// pngOf encodes a w×h picture filled by f.
func pngOf(t *testing.T, w, h int, f func(x, y int) color.NRGBA) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, f(x, y))
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// view fetches an output and decodes it as a PNG.
func view(t *testing.T, base, filename, subfolder, typ string) image.Image {
	t.Helper()
	resp, err := http.Get(base + "/view?filename=" + filename + "&subfolder=" + subfolder + "&type=" + typ)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("GET /view %s: %d %s", filename, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	img, err := png.Decode(resp.Body)
	if err != nil {
		t.Fatalf("decoding %s: %v", filename, err)
	}
	return img
}

// emptyGraph is EmptyImage → SaveImage (executors.md §1.4).
func emptyGraph(w, h, rgb int, prefix string) map[string]any {
	return map[string]any{
		"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": w, "height": h, "batch_size": 1, "color": rgb}},
		"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": prefix}},
	}
}

func waitFor(t *testing.T, s *Server, what string, cond func(Stats) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Wait(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v (stats %+v)", what, err, s.Stats())
	}
}

// history reads /history/{id}'s entry, nil while absent.
func history(t *testing.T, base, id string) map[string]any {
	t.Helper()
	var out map[string]map[string]any
	getJSON(t, base+"/history/"+id, &out)
	return out[id]
}
