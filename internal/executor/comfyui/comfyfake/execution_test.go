package comfyfake

import (
	"encoding/json"
	"image/color"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// §1.7: one worker, FIFO by number; others wait in /queue; never two at once.
func TestOnePromptAtATime(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{NodeDelay: 30 * time.Millisecond})
	base := s.URL()
	var ids []string
	for i := range 3 {
		ids = append(ids, submit(t, base, map[string]any{"prompt": emptyGraph(2+i, 2, 0, "q")}))
	}
	var q struct {
		Running [][]any `json:"queue_running"`
		Pending [][]any `json:"queue_pending"`
	}
	waitFor(t, s, "the first to run", func(st Stats) bool { return st.Running == ids[0] })
	getJSON(t, base+"/queue", &q)
	if len(q.Running) != 1 || q.Running[0][1] != ids[0] || len(q.Pending) != 2 || q.Pending[0][1] != ids[1] || q.Pending[1][1] != ids[2] {
		t.Fatalf("queue = %v", q)
	}
	if len(q.Running[0]) != 5 || q.Running[0][4].([]any)[0] != "2" {
		t.Errorf("queue item = %v, want [number, id, prompt, extra_data, outputs]", q.Running[0])
	}
	var info map[string]map[string]float64
	getJSON(t, base+"/prompt", &info)
	if info["exec_info"]["queue_remaining"] != 3 {
		t.Errorf("GET /prompt = %v", info)
	}
	waitFor(t, s, "all three", func(st Stats) bool { return len(st.Finished) == 3 })
	st := s.Stats()
	if st.MaxConcurrent != 1 || !reflect.DeepEqual(st.Started, ids) {
		t.Errorf("max concurrent %d, started %v, want 1 and %v", st.MaxConcurrent, st.Started, ids)
	}
}

// §1.1 POST /queue: only pending prompts are deleted; clear empties pending.
func TestQueueDeleteAndClear(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{NodeDelay: time.Hour})
	base := s.URL()
	a := submit(t, base, map[string]any{"prompt": emptyGraph(2, 2, 1, "d")})
	waitFor(t, s, "a running", func(st Stats) bool { return st.Running == a })
	b := submit(t, base, map[string]any{"prompt": emptyGraph(2, 2, 2, "d")})
	c := submit(t, base, map[string]any{"prompt": emptyGraph(2, 2, 3, "d")})
	if status, _ := doJSON(t, http.MethodPost, base+"/queue", map[string]any{"delete": []string{b, a, "unknown"}}); status != 200 {
		t.Fatalf("delete: %d", status)
	}
	st := s.Stats()
	if st.Running != a || !reflect.DeepEqual(st.Pending, []string{c}) {
		t.Fatalf("after delete: running %s pending %v", st.Running, st.Pending)
	}
	want := []Delete{{PromptID: b, Removed: true}, {PromptID: a}, {PromptID: "unknown"}}
	for i := range st.Deletes {
		st.Deletes[i].At = time.Time{}
	}
	if !reflect.DeepEqual(st.Deletes, want) {
		t.Errorf("deletes = %+v, want %+v", st.Deletes, want)
	}
	doJSON(t, http.MethodPost, base+"/queue", map[string]any{"clear": true})
	if st := s.Stats(); len(st.Pending) != 0 || st.Clears != 1 || st.Running != a {
		t.Errorf("after clear: %+v", st)
	}
}

// §1.1 /interrupt and §1.6 execution_interrupted: a targeted interrupt of a
// pending id is skipped; of the running one (or global) it stops it, and
// the history says error, not completed.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{NodeDelay: time.Hour})
	base := s.URL()
	ws := dial(t, base, "c1")
	read(t, ws)
	a := submit(t, base, map[string]any{"prompt": emptyGraph(2, 2, 0, "i"), "client_id": "c1"})
	b := submit(t, base, map[string]any{"prompt": emptyGraph(3, 2, 0, "i"), "client_id": "c1"})
	if m := readUntil(t, ws, "executing"); m.Data["node"] != "1" || m.Data["prompt_id"] != a {
		t.Fatalf("executing = %v", m.Data)
	}
	doJSON(t, http.MethodPost, base+"/interrupt", map[string]any{"prompt_id": b})
	doJSON(t, http.MethodPost, base+"/interrupt", map[string]any{"prompt_id": a})
	msgs := readUntilDone(t, ws, a) // b's queueing status may come first
	msgs = msgs[len(msgs)-3:]
	want := []string{"execution_interrupted", "status", "executing"}
	if got := types(msgs); !reflect.DeepEqual(got, want) {
		t.Fatalf("after interrupt: %v, want %v", got, want)
	}
	in := msgs[0].Data
	if in["prompt_id"] != a || in["node_id"] != "1" || in["node_type"] != "EmptyImage" || !reflect.DeepEqual(in["executed"], []any{}) {
		t.Errorf("execution_interrupted = %v", in)
	}
	h := history(t, base, a)
	status := h["status"].(map[string]any)
	msgsH := status["messages"].([]any)
	if status["status_str"] != "error" || status["completed"] != false || msgsH[len(msgsH)-1].([]any)[0] != "execution_interrupted" {
		t.Errorf("history status = %v", status)
	}
	// Without a body: a global interrupt of whatever runs (b now).
	readUntil(t, ws, "executing")
	if resp, err := http.Post(base+"/interrupt", "", nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("global interrupt: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	readUntilDone(t, ws, b)
	got := s.Stats().Interrupts
	if len(got) != 3 || got[0].Applied || got[0].Running != a || !got[1].Applied || got[1].PromptID != a || !got[2].Applied || got[2].PromptID != "" || got[2].Running != b {
		t.Errorf("interrupts = %+v", got)
	}
}

// §1.6 routing: prompt messages go only to the client's socket; a prompt
// without client_id sends no executing/executed/execution_* at all, while
// status and progress_state reach everyone.
func TestWebsocketRouting(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	a, b := dial(t, base, "a"), dial(t, base, "")
	read(t, a)
	if m := read(t, b); m.Type != "status" || len(m.Data["sid"].(string)) != 32 {
		t.Fatalf("generated sid = %v, want 32 hex digits", m.Data)
	}
	id := submit(t, base, map[string]any{"prompt": emptyGraph(2, 2, 0, "r"), "client_id": "a"})
	readUntilDone(t, a, id)
	// b saw only the status broadcasts: put, get, done. Then a prompt
	// without client: b sees status and progress_state, no done marker.
	for range 3 {
		if m := read(t, b); m.Type != "status" {
			t.Fatalf("b got %s of a's prompt", m.Type)
		}
	}
	submit(t, base, map[string]any{"prompt": emptyGraph(3, 2, 0, "r")})
	var got []string
	for len(got) < 2 || got[len(got)-1] != "status" || got[len(got)-2] != "progress_state" {
		got = append(got, read(t, b).Type)
	}
	want := []string{"status", "status", "progress_state", "progress_state", "progress_state", "progress_state", "status"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("without client_id b got %v, want %v", got, want)
	}
}

// §1.6: reconnecting with the same clientId while its prompt runs replays
// executing{node} without prompt_id; a feature_flags first frame is answered.
func TestWebsocketReconnectAndFeatureFlags(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{NodeDelay: time.Hour})
	base := s.URL()
	old := dial(t, base, "c")
	read(t, old)
	submit(t, base, map[string]any{"prompt": emptyGraph(2, 2, 0, "f"), "client_id": "c"})
	readUntil(t, old, "executing")
	_ = old.CloseNow()
	waitFor(t, s, "the old socket to go", func(st Stats) bool { return len(st.Clients) == 0 })
	c := dial(t, base, "c")
	if m := read(t, c); m.Type != "status" || m.Data["sid"] != "c" {
		t.Fatalf("first = %v", m)
	}
	if m := read(t, c); m.Type != "executing" || !reflect.DeepEqual(m.Data, map[string]any{"node": "1"}) {
		t.Fatalf("replay = %v %v", m.Type, m.Data)
	}
	frame, _ := json.Marshal(map[string]any{"type": "feature_flags", "data": map[string]any{"supports_preview_metadata": true}})
	if err := c.Write(t.Context(), websocket.MessageText, frame); err != nil {
		t.Fatal(err)
	}
	if m := read(t, c); m.Type != "feature_flags" || m.Data["max_upload_size"] != float64(DefaultMaxUploadSize) {
		t.Errorf("feature_flags answer = %v", m)
	}
}

// §1.5 and Faults.HistoryDelay: /history/{id} is {} until the delay after
// the done marker has passed.
func TestHistoryFilledLate(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	s := StartT(t, Options{Faults: Faults{HistoryDelay: delay}})
	base := s.URL()
	ws := dial(t, base, "h")
	read(t, ws)
	id := submit(t, base, map[string]any{"prompt": emptyGraph(2, 2, 0, "h"), "client_id": "h"})
	readUntilDone(t, ws, id)
	done := time.Now()
	if h := history(t, base, id); h != nil {
		t.Fatal("history present right after the done marker")
	}
	var all map[string]any
	getJSON(t, base+"/history", &all)
	if len(all) != 0 {
		t.Fatalf("/history lists %d entries before the delay", len(all))
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for history(t, base, id) == nil {
		if time.Since(done) > 5*time.Second {
			t.Fatal("history never filled")
		}
		<-tick.C
	}
	if since := time.Since(done); since < delay-50*time.Millisecond {
		t.Errorf("history appeared %v after the done marker, want ≥ %v", since, delay)
	}
}

// §1.1 GET /history: insertion order and max_items/offset.
func TestHistoryListing(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	var ids []string
	for i := range 3 {
		ids = append(ids, submit(t, base, map[string]any{"prompt": emptyGraph(2+i, 2, 0, "l"), "prompt_id": string(rune('c' - i))}))
	}
	waitFor(t, s, "three", func(st Stats) bool { return len(st.Finished) == 3 })
	keys := func(query string) []string {
		status, body := doJSON(t, http.MethodGet, base+"/history"+query, nil)
		if status != 200 {
			t.Fatalf("%s: %d", query, status)
		}
		ks, err := objectKeys(body)
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	if got := keys(""); !reflect.DeepEqual(got, ids) {
		t.Errorf("/history order %v, want %v", got, ids)
	}
	if got := keys("?max_items=2"); !reflect.DeepEqual(got, ids[1:]) {
		t.Errorf("max_items=2: %v, want the newest two", got)
	}
	if got := keys("?max_items=1&offset=0"); !reflect.DeepEqual(got, ids[:1]) {
		t.Errorf("offset=0: %v", got)
	}
	if status, _ := doJSON(t, http.MethodGet, base+"/history?max_items=x", nil); status != 500 {
		t.Errorf("bad max_items: %d, want 500", status)
	}
	doJSON(t, http.MethodPost, base+"/history", map[string]any{"delete": []string{ids[0]}})
	if got := keys(""); !reflect.DeepEqual(got, ids[1:]) {
		t.Errorf("after delete: %v", got)
	}
	doJSON(t, http.MethodPost, base+"/history", map[string]any{"clear": true})
	if got := keys(""); len(got) != 0 {
		t.Errorf("after clear: %v", got)
	}
}

// §1.4: the model-free workflows produce real PNGs served by /view.
func TestWorkflowsProduceRealImages(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	id := submit(t, base, map[string]any{"prompt": emptyGraph(32, 16, 0xFF0000, "sub/red")})
	waitFor(t, s, "empty", func(st Stats) bool { return len(st.Finished) == 1 })
	out := history(t, base, id)["outputs"].(map[string]any)["2"].(map[string]any)["images"].([]any)[0].(map[string]any)
	if out["filename"] != "red_00001_.png" || out["subfolder"] != "sub" || out["type"] != "output" {
		t.Fatalf("output = %v", out)
	}
	img := view(t, base, "red_00001_.png", "sub", "output")
	if r, g, b, _ := img.At(5, 5).RGBA(); img.Bounds().Dx() != 32 || img.Bounds().Dy() != 16 || r>>8 != 255 || g != 0 || b != 0 {
		t.Errorf("image %v at (5,5) = %v", img.Bounds(), img.At(5, 5))
	}

	white := pngOf(t, 8, 8, func(int, int) color.NRGBA { return color.NRGBA{255, 255, 255, 255} })
	_, up := upload(t, base, "white.png", white, nil)
	id = submit(t, base, map[string]any{"prompt": map[string]any{
		"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": up["name"]}},
		"2": map[string]any{"class_type": "ImageInvert", "inputs": map[string]any{"image": []any{"1", 0}}},
		"3": map[string]any{"class_type": "ImageScale", "inputs": map[string]any{"image": []any{"2", 0}, "upscale_method": "nearest-exact", "width": 16, "height": 0, "crop": "disabled"}},
		"4": map[string]any{"class_type": "PreviewImage", "inputs": map[string]any{"images": []any{"3", 0}}},
	}})
	waitFor(t, s, "load-invert-scale", func(st Stats) bool { return len(st.Finished) == 2 })
	out = history(t, base, id)["outputs"].(map[string]any)["4"].(map[string]any)["images"].([]any)[0].(map[string]any)
	if out["type"] != "temp" {
		t.Fatalf("PreviewImage output = %v", out)
	}
	img = view(t, base, out["filename"].(string), "", "temp")
	if r, _, _, _ := img.At(3, 3).RGBA(); img.Bounds().Dx() != 16 || img.Bounds().Dy() != 16 || r != 0 {
		t.Errorf("inverted, scaled image %v at (3,3) = %v", img.Bounds(), img.At(3, 3))
	}
}

// A batch (EmptyImage batch_size 3) is saved as one file per image, in
// batch order, with one counter incremented per image; "%batch_num%" in
// the prefix is the image's index (nodes.py SaveImage.save_images).
func TestBatchSavesOneFilePerImage(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	names := func(id string) []string {
		var out []string
		for _, f := range history(t, base, id)["outputs"].(map[string]any)["2"].(map[string]any)["images"].([]any) {
			out = append(out, f.(map[string]any)["filename"].(string))
		}
		return out
	}
	g := emptyGraph(8, 8, 0x00FF00, "b")
	g["1"].(map[string]any)["inputs"].(map[string]any)["batch_size"] = 3
	id := submit(t, base, map[string]any{"prompt": g})
	waitFor(t, s, "the batch", func(st Stats) bool { return len(st.Finished) == 1 })
	if got := strings.Join(names(id), " "); got != "b_00001_.png b_00002_.png b_00003_.png" {
		t.Errorf("files %s", got)
	}
	g = emptyGraph(8, 8, 0x0000FF, "b")
	g["1"].(map[string]any)["inputs"].(map[string]any)["batch_size"] = 2
	id = submit(t, base, map[string]any{"prompt": g})
	waitFor(t, s, "the second batch", func(st Stats) bool { return len(st.Finished) == 2 })
	if got := strings.Join(names(id), " "); got != "b_00004_.png b_00005_.png" {
		t.Errorf("files of the next batch %s, want the counter to go on", got)
	}
	g = emptyGraph(8, 8, 0x0000FF, "n_%batch_num%")
	g["1"].(map[string]any)["inputs"].(map[string]any)["batch_size"] = 2
	id = submit(t, base, map[string]any{"prompt": g})
	waitFor(t, s, "the numbered batch", func(st Stats) bool { return len(st.Finished) == 3 })
	if got := strings.Join(names(id), " "); got != "n_0_00001_.png n_1_00002_.png" {
		t.Errorf("files with %%batch_num%% %s", got)
	}
	if img := view(t, base, "b_00005_.png", "", "output"); img.Bounds().Dx() != 8 {
		t.Errorf("image %v", img.Bounds())
	}
}

// §1.7 caching: an identical graph lists every node in execution_cached,
// re-sends executed for the output node, runs nothing and writes no file.
func TestResubmittedGraphIsCached(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	ws := dial(t, base, "k")
	read(t, ws)
	body := map[string]any{"prompt": emptyGraph(4, 4, 7, "cache"), "client_id": "k"}
	first := readUntilDone(t, ws, submit(t, base, body))
	second := readUntilDone(t, ws, submit(t, base, body))
	if got := types(second); !reflect.DeepEqual(got, []string{"status", "status", "execution_start", "execution_cached",
		"executed", "progress_state", "execution_success", "status", "executing"}) {
		t.Fatalf("cached run: %v", got)
	}
	if nodes := second[3].Data["nodes"]; !reflect.DeepEqual(nodes, []any{"1", "2"}) {
		t.Errorf("execution_cached nodes = %v", nodes)
	}
	executed := func(ms []msg) any {
		for _, m := range ms {
			if m.Type == "executed" {
				return m.Data["output"]
			}
		}
		return nil
	}
	if !reflect.DeepEqual(executed(first), executed(second)) {
		t.Errorf("cached executed output %v, first %v", executed(second), executed(first))
	}
	if _, ok := s.File("output", "cache_00002_.png"); ok {
		t.Error("the cached run wrote a second file")
	}
}

// Options.Steps: progress {value,max} per step after progress_state (§1.6).
func TestProgressSteps(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{Steps: 3, StepClass: "EmptyImage"})
	base := s.URL()
	ws := dial(t, base, "p")
	read(t, ws)
	id := submit(t, base, map[string]any{"prompt": emptyGraph(2, 2, 0, "p"), "client_id": "p"})
	var values []float64
	for _, m := range readUntilDone(t, ws, id) {
		if m.Type == "progress" {
			if m.Data["max"] != 3.0 || m.Data["node"] != "1" || m.Data["prompt_id"] != id {
				t.Errorf("progress = %v", m.Data)
			}
			values = append(values, m.Data["value"].(float64))
		}
	}
	if !reflect.DeepEqual(values, []float64{1, 2, 3}) {
		t.Errorf("progress values %v, want 1 2 3", values)
	}
}

// Pause holds a prompt at its first node until Resume; MaxQueued counts
// running plus pending.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	s.Pause()
	ws := dial(t, base, "g")
	read(t, ws)
	a := submit(t, base, map[string]any{"prompt": emptyGraph(2, 2, 0, "g"), "client_id": "g"})
	if m := readUntil(t, ws, "executing"); m.Data["node"] != "1" {
		t.Fatalf("executing = %v", m.Data)
	}
	b := submit(t, base, map[string]any{"prompt": emptyGraph(3, 2, 0, "g")})
	st := s.Stats()
	if st.Running != a || !reflect.DeepEqual(st.Pending, []string{b}) || len(st.Finished) != 0 || st.MaxQueued != 2 {
		t.Fatalf("while paused: %+v", st)
	}
	s.Resume()
	waitFor(t, s, "both", func(st Stats) bool { return len(st.Finished) == 2 })
	if st := s.Stats(); st.MaxQueued != 2 || st.MaxConcurrent != 1 {
		t.Errorf("max queued %d, max concurrent %d", st.MaxQueued, st.MaxConcurrent)
	}
}

// §1.6 with server.py's detail: a second socket with the same clientId
// replaces the first, and closing the first afterwards unregisters the
// second: while it stays open, no message can reach it (Clients is what
// sends go to).
func TestReplacedSocketClosedLateSilencesReplacement(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	old := dial(t, base, "x")
	read(t, old)
	replacement := dial(t, base, "x")
	read(t, replacement)
	if got := s.Stats().Clients; !reflect.DeepEqual(got, []string{"x"}) {
		t.Fatalf("clients = %v", got)
	}
	_ = old.CloseNow()
	waitFor(t, s, "x to be unregistered", func(st Stats) bool { return len(st.Clients) == 0 })
	dial(t, base, "x")
	waitFor(t, s, "a fresh x", func(st Stats) bool { return reflect.DeepEqual(st.Clients, []string{"x"}) })
}
