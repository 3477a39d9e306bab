package comfyfake

import (
	"encoding/json"
	"image/color"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
)

// exchange is reference/comfyui-exchange.json, a recording of a real
// ComfyUI 0.3.65 (copied into testdata).
type exchange struct {
	Entries []struct {
		Kind        string          `json:"kind"`
		Label       string          `json:"label"`
		Status      int             `json:"status"`
		Request     json.RawMessage `json:"request"`
		Response    json.RawMessage `json:"response"`
		Msg         json.RawMessage `json:"msg"`
		Keys        []string        `json:"keys"`
		Params      map[string]any  `json:"params"`
		ContentType string          `json:"content_type"`
	} `json:"entries"`
}

// normalise replaces the ids that differ between runs (prompt ids, given
// in ids as actual → placeholder) and zeroes every "timestamp", exactly the
// fields the brief allows to differ; everything else must be equal.
func normalise(t *testing.T, raw []byte, ids map[string]string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	var walk func(any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			out := map[string]any{}
			for k, val := range x {
				if k == "timestamp" {
					out[k] = 0.0
					continue
				}
				if p, ok := ids[k]; ok {
					k = p
				}
				out[k] = walk(val)
			}
			return out
		case []any:
			out := make([]any, len(x))
			for i, val := range x {
				out[i] = walk(val)
			}
			return out
		case string:
			if p, ok := ids[x]; ok {
				return p
			}
		}
		return v
	}
	return walk(v)
}

func mustEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("%s differs from the recording\n got: %s\nwant: %s", what, g, w)
	}
}

// TestReplayRecordedExchange drives the fake with the recorded requests of
// a real ComfyUI 0.3.65 and checks every response and the websocket
// message sequence, message for message, against the recording.
func TestReplayRecordedExchange(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/comfyui-exchange.json")
	if err != nil {
		t.Fatal(err)
	}
	var ex exchange
	if err := json.Unmarshal(raw, &ex); err != nil {
		t.Fatal(err)
	}
	s := StartT(t, Options{})
	base := s.URL()

	// The recorded client used one websocket whose sid is the prompts' client_id.
	var connect struct {
		Data struct {
			Sid string `json:"sid"`
		} `json:"data"`
	}
	var ws = map[string][]json.RawMessage{}
	for _, e := range ex.Entries {
		if e.Kind == "ws" {
			ws[e.Label] = append(ws[e.Label], e.Msg)
		}
	}
	if err := json.Unmarshal(ws["connect"][0], &connect); err != nil {
		t.Fatal(err)
	}
	conn := dial(t, base, connect.Data.Sid)
	first, _ := json.Marshal(read(t, conn))
	mustEqual(t, "connect message", normalise(t, first, nil), normalise(t, ws["connect"][0], nil))

	ids := map[string]string{}      // actual prompt id → placeholder
	recorded := map[string]string{} // recorded prompt id → placeholder
	seenWS := map[string]bool{}
	for i, e := range ex.Entries {
		switch {
		case e.Kind == "GET /system_stats":
			var got, want map[string]any
			getJSON(t, base+"/system_stats", &got)
			_ = json.Unmarshal(e.Response, &want)
			mustEqual(t, "system_stats keys", shape(got), shape(want))
			if got["system"].(map[string]any)["comfyui_version"] != "0.3.65" {
				t.Errorf("comfyui_version = %v", got["system"].(map[string]any)["comfyui_version"])
			}
		case strings.HasPrefix(e.Kind, "GET /object_info/"):
			var got map[string]any
			if status := getJSON(t, base+strings.TrimPrefix(e.Kind, "GET "), &got); status != e.Status {
				t.Fatalf("%s: status %d", e.Kind, status)
			}
			keys := []string{}
			for k := range got {
				keys = append(keys, k)
			}
			mustEqual(t, e.Kind+" keys", keys, e.Keys)
		case e.Kind == "POST /upload/image":
			// One colour keeps the recorded 1024×1024 bicubic scale cheap
			// under -race; images_test.go checks the arithmetic on real pictures.
			status, got := upload(t, base, "astronaut.png", pngOf(t, 48, 32, func(int, int) color.NRGBA {
				return color.NRGBA{30, 60, 200, 255}
			}), nil)
			gotRaw, _ := json.Marshal(got)
			if status != e.Status {
				t.Fatalf("upload: status %d", status)
			}
			mustEqual(t, "upload response", normalise(t, gotRaw, nil), normalise(t, e.Response, nil))
		case e.Kind == "POST /prompt":
			var body map[string]any
			_ = json.Unmarshal(e.Request, &body)
			status, got := doJSON(t, http.MethodPost, base+"/prompt", body)
			if status != e.Status {
				t.Fatalf("%s %s: status %d, recorded %d: %s", e.Kind, e.Label, status, e.Status, got)
			}
			if status == http.StatusOK {
				var resp, want struct {
					PromptID string `json:"prompt_id"`
				}
				_ = json.Unmarshal(got, &resp)
				_ = json.Unmarshal(e.Response, &want)
				ids[resp.PromptID] = "<" + e.Label + ">"
				recorded[want.PromptID] = "<" + e.Label + ">"
			}
			mustEqual(t, e.Kind+" "+e.Label, normalise(t, got, ids), normalise(t, e.Response, recorded))
			if status == http.StatusOK && !seenWS[e.Label] {
				seenWS[e.Label] = true
				var id string
				for k, v := range ids {
					if v == "<"+e.Label+">" {
						id = k
					}
				}
				msgs := readUntilDone(t, conn, id)
				var gotMsgs, wantMsgs []any
				for _, m := range msgs {
					b, _ := json.Marshal(m)
					gotMsgs = append(gotMsgs, normalise(t, b, ids))
				}
				for _, m := range ws[e.Label] {
					wantMsgs = append(wantMsgs, normalise(t, m, recorded))
				}
				if len(gotMsgs) != len(wantMsgs) {
					t.Fatalf("%s: %d websocket messages %v, recorded %d", e.Label, len(msgs), types(msgs), len(wantMsgs))
				}
				for j := range wantMsgs {
					mustEqual(t, e.Label+" websocket message "+types(msgs)[j], gotMsgs[j], wantMsgs[j])
				}
			}
		case e.Kind == "GET /history/{id}":
			var id string
			for k, v := range ids {
				if v == "<"+e.Label+">" {
					id = k
				}
			}
			status, got := doJSON(t, http.MethodGet, base+"/history/"+id, nil)
			if status != e.Status {
				t.Fatalf("history: status %d", status)
			}
			mustEqual(t, "history of "+e.Label, normalise(t, got, ids), normalise(t, e.Response, recorded))
		case e.Kind == "GET /view":
			img := view(t, base, e.Params["filename"].(string), e.Params["subfolder"].(string), e.Params["type"].(string))
			// The previous POST /prompt of this label scaled to width×height.
			w, h := scaledSize(t, ex, i)
			if img.Bounds().Dx() != w || img.Bounds().Dy() != h {
				t.Errorf("%s: image %v, want %dx%d", e.Params["filename"], img.Bounds(), w, h)
			}
		case e.Kind == "GET /queue":
			status, got := doJSON(t, http.MethodGet, base+"/queue", nil)
			if status != e.Status {
				t.Fatalf("queue: status %d", status)
			}
			mustEqual(t, "queue", normalise(t, got, ids), normalise(t, e.Response, recorded))
		}
	}
	if len(seenWS) != 2 {
		t.Fatalf("replayed %d workflows, want 2", len(seenWS))
	}
}

// shape replaces every leaf with its JSON type, to compare structures whose
// values (RAM, versions of Python) legitimately differ.
func shape(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, val := range x {
			out[k] = shape(val)
		}
		return out
	case []any:
		if len(x) == 0 {
			return []any{}
		}
		return []any{shape(x[0])}
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

// scaledSize finds the ImageScale size of the prompt recorded before entry i.
func scaledSize(t *testing.T, ex exchange, i int) (int, int) {
	t.Helper()
	for j := i; j >= 0; j-- {
		e := ex.Entries[j]
		if e.Kind != "POST /prompt" || e.Label != ex.Entries[i].Label {
			continue
		}
		var body struct {
			Prompt map[string]struct {
				ClassType string         `json:"class_type"`
				Inputs    map[string]any `json:"inputs"`
			} `json:"prompt"`
		}
		_ = json.Unmarshal(e.Request, &body)
		for _, n := range body.Prompt {
			if n.ClassType == "ImageScale" {
				return int(n.Inputs["width"].(float64)), int(n.Inputs["height"].(float64))
			}
		}
	}
	t.Fatalf("no ImageScale before entry %d", i)
	return 0, 0
}
