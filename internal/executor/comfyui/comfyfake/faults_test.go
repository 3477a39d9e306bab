package comfyfake

import (
	"context"
	"encoding/json"
	"errors"
	"image/color"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// §1.5/§1.7 restart: queue, history and temp are gone, numbers start over,
// websockets drop, input/output files stay; Stats keep counting.
func TestRestartLosesState(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{NodeDelay: time.Hour})
	base := s.URL()
	if err := s.PutFile("temp", "t.png", []byte("t")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutFile("input", "i.png", []byte("i")); err != nil {
		t.Fatal(err)
	}
	ws := dial(t, base, "r")
	read(t, ws)
	running := submit(t, base, map[string]any{"prompt": emptyGraph(2, 2, 0, "r"), "prompt_id": "p1", "client_id": "r"})
	submit(t, base, map[string]any{"prompt": emptyGraph(3, 2, 0, "r"), "prompt_id": "p2"})
	waitFor(t, s, "p1 running", func(st Stats) bool { return st.Running == running })
	if err := s.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s.URL() != base {
		t.Fatalf("restarted on %s, was %s", s.URL(), base)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			break // the socket was dropped
		}
	}
	var q map[string][]any
	getJSON(t, base+"/queue", &q)
	if len(q["queue_running"]) != 0 || len(q["queue_pending"]) != 0 {
		t.Errorf("queue after restart = %v", q)
	}
	if h := history(t, base, "p1"); h != nil {
		t.Errorf("history after restart = %v", h)
	}
	status, body := doJSON(t, http.MethodPost, base+"/prompt", map[string]any{"prompt": emptyGraph(2, 2, 0, "r"), "prompt_id": "p1"})
	var resp map[string]any
	_ = json.Unmarshal(body, &resp)
	if status != 200 || resp["number"] != 0.0 {
		t.Errorf("first prompt after restart: %d %v, want number 0", status, resp)
	}
	if _, ok := s.File("temp", "t.png"); ok {
		t.Error("temp survived the restart")
	}
	if _, ok := s.File("input", "i.png"); !ok {
		t.Error("input did not survive the restart")
	}
	st := s.Stats()
	if st.Submissions["p1"] != 2 || st.Restarts != 1 || len(st.Finished) != 0 {
		t.Errorf("stats after restart: %+v", st)
	}
}

// Kill: connections are refused until Start, on the same address.
func TestKillRefusesConnections(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	s.Kill()
	_, err := http.Get(base + "/queue")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("GET after Kill: %v, want connection refused", err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if status := getJSON(t, base+"/queue", nil); status != 200 {
		t.Errorf("after Start: %d", status)
	}
}

// Faults.HTTPStatus: every request, the websocket too, gets the status.
func TestInjectedHTTPStatus(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	base := s.URL()
	if err := s.SetFaults(Faults{HTTPStatus: 502}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/queue", "/history/x", "/system_stats"} {
		if status, _ := doJSON(t, http.MethodGet, base+p, nil); status != 502 {
			t.Errorf("%s: %d, want 502", p, status)
		}
	}
	if status, _ := doJSON(t, http.MethodPost, base+"/prompt", map[string]any{"prompt": emptyGraph(2, 2, 0, "x")}); status != 502 {
		t.Errorf("POST /prompt: %d", status)
	}
	_, resp, err := websocket.Dial(t.Context(), "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != 502 {
		t.Errorf("websocket: %v %v, want a 502", resp, err)
	}
	if err := s.SetFaults(Faults{}); err != nil {
		t.Fatal(err)
	}
	if status := getJSON(t, base+"/queue", nil); status != 200 {
		t.Errorf("after clearing: %d", status)
	}
	if s.Stats().Rejected != 0 || len(s.Stats().Submissions) != 0 {
		t.Error("a request answered by the fault reached the API")
	}
	if err := s.SetFaults(Faults{HTTPStatus: 7}); err == nil {
		t.Error("HTTPStatus 7 accepted")
	}
}

// Faults.StallAfter (§1.8): the socket stays open and silent while the
// prompt runs to completion; messages sent meanwhile never arrive.
func TestWebsocketStall(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{Faults: Faults{StallAfter: 3}})
	base := s.URL()
	ws := dial(t, base, "s")
	// The socket's first status comes once it is registered: only then is
	// the prompt submitted, or a prompt already running when the socket
	// registers is announced with executing{node} instead.
	first := read(t, ws).Type
	id := submit(t, base, map[string]any{"prompt": emptyGraph(2, 2, 0, "s"), "client_id": "s"})
	got := []string{first, read(t, ws).Type, read(t, ws).Type}
	if strings.Join(got, ",") != "status,status,status" {
		t.Fatalf("first three: %v", got)
	}
	waitFor(t, s, "the prompt to finish", func(st Stats) bool { return len(st.Finished) == 1 })
	if h := history(t, base, id); h == nil {
		t.Fatal("no history: the prompt did not run through")
	}
	// Lift the stall and cause one more broadcast: it must be the next
	// message, so nothing of the prompt's run was delivered.
	if err := s.SetFaults(Faults{}); err != nil {
		t.Fatal(err)
	}
	doJSON(t, http.MethodPost, base+"/queue", map[string]any{"clear": true})
	if m := read(t, ws); m.Type != "status" || m.Data["status"].(map[string]any)["exec_info"].(map[string]any)["queue_remaining"] != 0.0 {
		t.Errorf("next message %v %v, want the clear's status", m.Type, m.Data)
	}
}

// DropWebsockets: the sockets close, the server keeps running.
func TestDropWebsockets(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	ws := dial(t, s.URL(), "d")
	read(t, ws)
	s.DropWebsockets()
	if _, _, err := ws.Read(t.Context()); err == nil {
		t.Fatal("socket still open")
	}
	if status := getJSON(t, s.URL()+"/queue", nil); status != 200 {
		t.Errorf("server down after dropping sockets: %d", status)
	}
}

// Faults.FailClass and MaxPixels (§1.6 execution_error, §1.7): a node
// exception and out-of-memory errors, with the history status "error".
func TestNodeExceptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opts     Options
		w, h     int
		typ      string
		tips     bool
		failNode string
	}{
		{name: "exception", opts: Options{Faults: Faults{FailClass: "SaveImage"}}, w: 4, h: 4, typ: "RuntimeError", failNode: "2"},
		{name: "injected OOM", opts: Options{Faults: Faults{FailClass: "EmptyImage", FailOOM: true}}, w: 4, h: 4, typ: "torch.OutOfMemoryError", tips: true, failNode: "1"},
		{name: "too many pixels", opts: Options{MaxPixels: 1000}, w: 100, h: 100, typ: "torch.OutOfMemoryError", tips: true, failNode: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := StartT(t, tt.opts)
			base := s.URL()
			ws := dial(t, base, "e")
			read(t, ws)
			id := submit(t, base, map[string]any{"prompt": emptyGraph(tt.w, tt.h, 0, "e"), "client_id": "e"})
			msgs := readUntilDone(t, ws, id)
			var errMsg map[string]any
			for _, m := range msgs {
				if m.Type == "execution_error" {
					errMsg = m.Data
				}
				if m.Type == "execution_success" {
					t.Fatal("execution_success after a failure")
				}
			}
			if errMsg == nil {
				t.Fatalf("no execution_error in %v", types(msgs))
			}
			for _, k := range []string{"prompt_id", "node_id", "node_type", "executed", "exception_message", "exception_type", "traceback", "current_inputs", "current_outputs", "timestamp"} {
				if _, ok := errMsg[k]; !ok {
					t.Errorf("execution_error lacks %s", k)
				}
			}
			if errMsg["exception_type"] != tt.typ || errMsg["node_id"] != tt.failNode ||
				strings.Contains(errMsg["exception_message"].(string), "TIPS") != tt.tips {
				t.Errorf("execution_error = %v", errMsg)
			}
			status := history(t, base, id)["status"].(map[string]any)
			if status["status_str"] != "error" || status["completed"] != false {
				t.Errorf("history status = %v", status)
			}
		})
	}
}

// ControlRoutes serve Stats, Faults and a restart for another process.
func TestControlRoutes(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{ControlRoutes: true})
	base := s.URL()
	submit(t, base, map[string]any{"prompt": emptyGraph(2, 2, 0, "c"), "prompt_id": "c1"})
	waitFor(t, s, "c1", func(st Stats) bool { return len(st.Finished) == 1 })
	var st Stats
	getJSON(t, base+"/_comfyfake/stats", &st)
	if st.Submissions["c1"] != 1 || st.MaxConcurrent != 1 {
		t.Errorf("stats = %+v", st)
	}
	if status, _ := doJSON(t, http.MethodPost, base+"/_comfyfake/faults", Faults{HTTPStatus: 500}); status != 200 {
		t.Fatalf("faults: %d", status)
	}
	if status := getJSON(t, base+"/queue", nil); status != 500 {
		t.Errorf("queue with fault: %d", status)
	}
	doJSON(t, http.MethodPost, base+"/_comfyfake/faults", Faults{})
	if status, _ := doJSON(t, http.MethodPost, base+"/_comfyfake/restart", nil); status != 200 {
		t.Fatalf("restart: %d", status)
	}
	if h := history(t, base, "c1"); h != nil || s.Stats().Restarts != 1 {
		t.Errorf("after restart: history %v, restarts %d", h, s.Stats().Restarts)
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{{NodeDelay: -1}, {Steps: -1}, {StepDelay: -1}, {MaxUploadSize: -1}, {Faults: Faults{StallAfter: -1}}, {Faults: Faults{HistoryDelay: -1}}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// A cycle of links passes validation and fails at execution, without
// hanging or crashing the fake.
func TestLinkCycleFailsAtExecution(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{})
	id := submit(t, s.URL(), map[string]any{"prompt": map[string]any{
		"1": map[string]any{"class_type": "ImageInvert", "inputs": map[string]any{"image": []any{"2", 0}}},
		"2": map[string]any{"class_type": "ImageInvert", "inputs": map[string]any{"image": []any{"1", 0}}},
		"3": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"2", 0}, "filename_prefix": "c"}},
	}})
	waitFor(t, s, "the cycle to fail", func(st Stats) bool { return len(st.Finished) == 1 })
	if status := history(t, s.URL(), id)["status"].(map[string]any); status["status_str"] != "error" {
		t.Errorf("history status = %v", status)
	}
}

// LoadImage checks an upload's declared size against MaxPixels before
// decoding it.
func TestLoadImageTooLarge(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{MaxPixels: 100})
	base := s.URL()
	_, up := upload(t, base, "big.png", pngOf(t, 20, 20, func(int, int) color.NRGBA { return color.NRGBA{A: 255} }), nil)
	id := submit(t, base, map[string]any{"prompt": map[string]any{
		"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": up["name"]}},
		"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": "big"}},
	}})
	waitFor(t, s, "the load to fail", func(st Stats) bool { return len(st.Finished) == 1 })
	msgs := history(t, base, id)["status"].(map[string]any)["messages"].([]any)
	last := msgs[len(msgs)-1].([]any)
	if last[0] != "execution_error" || last[1].(map[string]any)["exception_type"] != "torch.OutOfMemoryError" {
		t.Errorf("last message = %v", last)
	}
}
