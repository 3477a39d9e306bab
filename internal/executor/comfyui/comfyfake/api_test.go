package comfyfake

import (
	"bytes"
	"encoding/json"
	"image/color"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// §1.1: every route is also served under /api.
func TestRoutesWithAndWithoutAPIPrefix(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	id := submit(t, base+"/api", map[string]any{"prompt": emptyGraph(4, 4, 0, "api")})
	waitFor(t, s, "the prompt to finish", func(st Stats) bool { return len(st.Finished) == 1 })
	for _, path := range []string{"/prompt", "/queue", "/history", "/history/" + id, "/object_info/SaveImage", "/features", "/view?filename=api_00001_.png"} {
		s1, b1 := doJSON(t, http.MethodGet, base+path, nil)
		s2, b2 := doJSON(t, http.MethodGet, base+"/api"+path, nil)
		if s1 != http.StatusOK || s1 != s2 || !bytes.Equal(b1, b2) {
			t.Errorf("%s: %d %q vs /api: %d %q", path, s1, b1, s2, b2)
		}
	}
	if status, _ := doJSON(t, http.MethodGet, base+"/api/system_stats", nil); status != http.StatusOK {
		t.Errorf("/api/system_stats: %d", status)
	}
}

// §1.2: the 400 bodies of validation, and a 500 for a body that is not JSON.
func TestPromptValidationErrors(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	scale := func(method string, width int) map[string]any {
		return map[string]any{
			"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 8, "height": 8, "batch_size": 1, "color": 0}},
			"2": map[string]any{"class_type": "ImageScale", "inputs": map[string]any{"image": []any{"1", 0}, "upscale_method": method, "width": width, "height": 8, "crop": "disabled"}},
			"3": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"2", 0}, "filename_prefix": "v"}},
		}
	}
	tests := []struct {
		name      string
		body      map[string]any
		errType   string
		message   string
		nodeError map[string]string // node id → first error type
	}{
		{name: "no prompt", body: map[string]any{}, errType: "no_prompt", message: "No prompt provided"},
		{name: "missing class_type", body: map[string]any{"prompt": map[string]any{"7": map[string]any{"inputs": map[string]any{}}}},
			errType: "invalid_prompt", message: "Cannot execute because a node is missing the class_type property."},
		{name: "unknown class", body: map[string]any{"prompt": map[string]any{"1": map[string]any{"class_type": "KSampler", "inputs": map[string]any{}}}},
			errType: "invalid_prompt", message: "Cannot execute because node KSampler does not exist."},
		{name: "no outputs", body: map[string]any{"prompt": map[string]any{"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{}}}},
			errType: "prompt_no_outputs", message: "Prompt has no outputs"},
		{name: "required input missing", body: map[string]any{"prompt": map[string]any{"1": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"filename_prefix": "x"}}}},
			errType: "prompt_outputs_failed_validation", message: "Prompt outputs failed validation", nodeError: map[string]string{"1": "required_input_missing"}},
		{name: "value not in list", body: map[string]any{"prompt": scale("sideways", 8)},
			errType: "prompt_outputs_failed_validation", message: "Prompt outputs failed validation", nodeError: map[string]string{"2": "value_not_in_list"}},
		{name: "value bigger than max", body: map[string]any{"prompt": scale("bicubic", 20000)},
			errType: "prompt_outputs_failed_validation", message: "Prompt outputs failed validation", nodeError: map[string]string{"2": "value_bigger_than_max"}},
		{name: "LoadImage of a file not uploaded", body: map[string]any{"prompt": map[string]any{
			"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": "missing.png"}},
			"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": "x"}}}},
			errType: "prompt_outputs_failed_validation", message: "Prompt outputs failed validation", nodeError: map[string]string{"1": "custom_validation_failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := doJSON(t, http.MethodPost, base+"/prompt", tt.body)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d: %s", status, body)
			}
			var resp struct {
				Error      promptError               `json:"error"`
				NodeErrors map[string]map[string]any `json:"node_errors"`
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Error.Type != tt.errType || resp.Error.Message != tt.message || resp.Error.ExtraInfo == nil {
				t.Errorf("error = %+v, want type %q message %q", resp.Error, tt.errType, tt.message)
			}
			got := map[string]string{}
			for id, ne := range resp.NodeErrors {
				got[id] = ne["errors"].([]any)[0].(map[string]any)["type"].(string)
				if ne["dependent_outputs"] == nil || ne["class_type"] == "" {
					t.Errorf("node error %s lacks dependent_outputs/class_type: %v", id, ne)
				}
			}
			if len(tt.nodeError) > 0 && !reflect.DeepEqual(got, tt.nodeError) {
				t.Errorf("node_errors = %v, want %v", got, tt.nodeError)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/prompt", strings.NewReader("{not json"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("non-JSON body: %d, want 500", resp.StatusCode)
	}
	if st := s.Stats(); st.Rejected != len(tests)+1 || len(st.Submissions) != 0 {
		t.Errorf("stats: rejected %d submissions %v", st.Rejected, st.Submissions)
	}
}

// §1.2: a client-chosen prompt_id is used; numbers count every POST; a
// repeated id is queued again (counted twice); "front" negates the number.
func TestClientChosenPromptIDAndNumbers(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	numbers := []float64{}
	for _, body := range []map[string]any{
		{"prompt": emptyGraph(2, 2, 0, "a"), "prompt_id": "mine-1"},
		{"prompt": emptyGraph(2, 2, 0, "a"), "prompt_id": "mine-1", "extra_data": map[string]any{"api_key_comfy_org": "secret", "keep": 1}},
		{"prompt": emptyGraph(2, 2, 0, "a"), "front": true},
		{"prompt": emptyGraph(2, 2, 0, "a"), "number": 12.5},
	} {
		status, data := doJSON(t, http.MethodPost, base+"/prompt", body)
		var resp map[string]any
		_ = json.Unmarshal(data, &resp)
		if status != http.StatusOK {
			t.Fatalf("status %d %s", status, data)
		}
		if want, ok := body["prompt_id"]; ok && resp["prompt_id"] != want {
			t.Errorf("prompt_id = %v, want %v", resp["prompt_id"], want)
		}
		numbers = append(numbers, resp["number"].(float64))
	}
	if want := []float64{0, 1, -2, 12.5}; !reflect.DeepEqual(numbers, want) {
		t.Errorf("numbers = %v, want %v", numbers, want)
	}
	waitFor(t, s, "four prompts", func(st Stats) bool { return len(st.Finished) == 4 })
	if n := s.Stats().Submissions["mine-1"]; n != 2 {
		t.Errorf("submissions of mine-1 = %d, want 2", n)
	}
	h := history(t, base, "mine-1")
	if h == nil || h["status"].(map[string]any)["status_str"] != "success" {
		t.Fatalf("history of mine-1 = %v", h)
	}
	// §1.3: the second run's entry replaced the first; credentials are stripped.
	if extra := h["prompt"].([]any)[3]; !reflect.DeepEqual(extra, map[string]any{"keep": 1.0}) {
		t.Errorf("history extra_data = %v, want the key stripped", extra)
	}
}

// §1.1: /upload/image stores the file under its name, reuses the name for
// identical bytes, renames "x (1).png" for different bytes, overwrites on
// request and refuses paths that escape.
func TestUploadNameCollisions(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	red := pngOf(t, 2, 2, func(int, int) color.NRGBA { return color.NRGBA{255, 0, 0, 255} })
	blue := pngOf(t, 2, 2, func(int, int) color.NRGBA { return color.NRGBA{0, 0, 255, 255} })
	steps := []struct {
		name   string
		data   []byte
		fields map[string]string
		status int
		want   string
	}{
		{name: "first", data: red, status: 200, want: "x.png"},
		{name: "identical bytes reuse the name", data: red, status: 200, want: "x.png"},
		{name: "different bytes are renamed", data: blue, status: 200, want: "x (1).png"},
		{name: "again different", data: pngOf(t, 3, 3, func(int, int) color.NRGBA { return color.NRGBA{A: 255} }), status: 200, want: "x (2).png"},
		{name: "overwrite keeps the name", data: blue, fields: map[string]string{"overwrite": "true"}, status: 200, want: "x.png"},
		{name: "subfolder", data: red, fields: map[string]string{"subfolder": "sub", "type": "temp"}, status: 200, want: "x.png"},
		{name: "escaping subfolder", data: red, fields: map[string]string{"subfolder": "../.."}, status: 400},
	}
	for _, st := range steps {
		status, resp := upload(t, base, "x.png", st.data, st.fields)
		if status != st.status || (status == 200 && resp["name"] != st.want) {
			t.Fatalf("%s: %d %v, want %d %s", st.name, status, resp, st.status, st.want)
		}
	}
	if status, _ := upload(t, base, "-", nil, map[string]string{"type": "input"}); status != http.StatusBadRequest {
		t.Errorf("no file part: %d, want 400", status)
	}
	if got, _ := s.File("input", "x.png"); !bytes.Equal(got, blue) {
		t.Error("overwrite did not replace x.png")
	}
	if _, ok := s.File("temp", "sub/x.png"); !ok {
		t.Error("temp/sub/x.png missing")
	}
	ups := s.Stats().Uploads
	if len(ups) != 6 || !ups[1].Reused || ups[2].Reused || ups[2].Name != "x (1).png" {
		t.Errorf("recorded uploads = %+v", ups)
	}
}

// §1.1 /view: bytes with Content-Disposition; 400, 403 and 404 as ComfyUI.
func TestViewErrors(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	if err := s.PutFile("output", "sub/a.png", []byte("png")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		query  string
		status int
	}{
		{"filename=a.png&subfolder=sub", 200},
		{"filename=a.png&subfolder=sub&type=output", 200},
		{"filename=a.png [output]&subfolder=sub&type=input", 200},
		{"filename=a.png", 404},
		{"filename=a.png&subfolder=sub&type=input", 404},
		{"subfolder=sub", 404},
		{"filename=", 400},
		{"filename=../a.png", 400},
		{"filename=/etc/passwd", 400},
		{"filename=a.png&subfolder=../../etc", 403},
		{"filename=a.png&subfolder=sub&type=models", 400},
	}
	for _, tt := range tests {
		resp, err := http.Get(base + "/view?" + strings.ReplaceAll(tt.query, " ", "%20"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s: %d, want %d", tt.query, resp.StatusCode, tt.status)
		}
		if tt.status == 200 && resp.Header.Get("Content-Disposition") != `filename="a.png"` {
			t.Errorf("%s: Content-Disposition %q", tt.query, resp.Header.Get("Content-Disposition"))
		}
	}
}

// §1.1: a loopback server refuses a request whose Origin names another host.
func TestOriginCheck(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	for origin, want := range map[string]int{"": 200, "http://evil.example": 403, "http://127.0.0.1": 200, s.URL(): 200} {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+"/queue", nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Origin %q: %d, want %d", origin, resp.StatusCode, want)
		}
	}
}

// §1.1 object_info: the catalog in node_info's shape; {} for an unknown class.
func TestObjectInfo(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	if err := s.PutFile("input", "in.png", []byte("x")); err != nil {
		t.Fatal(err)
	}
	var all map[string]map[string]any
	getJSON(t, s.URL()+"/object_info", &all)
	for _, name := range []string{"EmptyImage", "ImageBlur", "ImageScale", "ImageInvert", "LoadImage", "SaveImage", "PreviewImage"} {
		if all[name] == nil || all[name]["name"] != name {
			t.Errorf("object_info lacks %s", name)
		}
	}
	if all["SaveImage"]["output_node"] != true {
		t.Error("SaveImage is not an output node")
	}
	image := all["LoadImage"]["input"].(map[string]any)["required"].(map[string]any)["image"].([]any)
	if !reflect.DeepEqual(image[0], []any{"in.png"}) {
		t.Errorf("LoadImage choices = %v, want the input files", image[0])
	}
	var none map[string]any
	getJSON(t, s.URL()+"/object_info/NoSuchNode", &none)
	if len(none) != 0 {
		t.Errorf("unknown class: %v", none)
	}
}
