package comfyfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// routes mounts every route with and without the /api prefix (§1.1
// "Every route is also mounted with an /api prefix").
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, p := range []string{"", "/api"} {
		mux.HandleFunc("GET "+p+"/ws", s.serveWS)
		mux.HandleFunc("POST "+p+"/prompt", s.postPrompt)
		mux.HandleFunc("GET "+p+"/prompt", s.getPrompt)
		mux.HandleFunc("GET "+p+"/queue", s.getQueue)
		mux.HandleFunc("POST "+p+"/queue", s.postQueue)
		mux.HandleFunc("POST "+p+"/interrupt", s.postInterrupt)
		mux.HandleFunc("GET "+p+"/history", s.getHistory)
		mux.HandleFunc("GET "+p+"/history/{id}", s.getHistoryID)
		mux.HandleFunc("POST "+p+"/history", s.postHistory)
		mux.HandleFunc("GET "+p+"/view", s.getView)
		mux.HandleFunc("POST "+p+"/upload/image", s.postUpload)
		mux.HandleFunc("GET "+p+"/system_stats", s.getSystemStats)
		mux.HandleFunc("GET "+p+"/object_info", s.getObjectInfo)
		mux.HandleFunc("GET "+p+"/object_info/{class}", s.getObjectInfo)
		mux.HandleFunc("GET "+p+"/features", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.features()) })
		mux.HandleFunc("POST "+p+"/free", func(w http.ResponseWriter, _ *http.Request) {})
	}
	if s.opts.ControlRoutes {
		mux.HandleFunc("GET /_comfyfake/stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Stats()) })
		mux.HandleFunc("POST /_comfyfake/faults", s.postFaults)
		mux.HandleFunc("POST /_comfyfake/restart", func(w http.ResponseWriter, _ *http.Request) { s.reset() })
	}
	return s.middleware(mux)
}

// middleware tells Options.OnRequest, applies Faults.HTTPStatus and
// ComfyUI's origin check.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opts.OnRequest != nil {
			s.opts.OnRequest(r)
		}
		if !strings.HasPrefix(r.URL.Path, "/_comfyfake/") {
			if status := s.Faults().HTTPStatus; status != 0 {
				http.Error(w, fmt.Sprintf("comfyfake: injected HTTP %d", status), status)
				return
			}
		}
		if !originAllowed(r) {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if r.Method == http.MethodOptions {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// originAllowed is server.py create_origin_only_middleware (§1.1 "Security
// middleware"): a request to a loopback Host whose Origin names another
// host is refused; ports are compared only when both carry one.
func originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || r.Host == "" {
		return true
	}
	o, err := url.Parse(origin)
	if err != nil {
		return true
	}
	hostURL, err := url.Parse("//" + strings.ToLower(r.Host))
	if err != nil {
		return true
	}
	hostName := hostURL.Hostname()
	ip := net.ParseIP(hostName)
	if !(hostName == "localhost" || (ip != nil && ip.IsLoopback())) {
		return true
	}
	host, org := strings.ToLower(r.Host), strings.ToLower(o.Host)
	if o.Port() == "" {
		host = hostName
	}
	if hostURL.Port() == "" {
		org = strings.ToLower(o.Hostname())
	}
	return host == "" || org == "" || host == org
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding response", http.StatusInternalServerError)
		return
	}
	writeRawJSON(w, status, body)
}

func writeRawJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// internalError is aiohttp's answer when a handler raises (§1.2 "Non-JSON
// body → 500").
func internalError(w http.ResponseWriter) {
	http.Error(w, "500 Internal Server Error\n\nServer got itself in trouble", http.StatusInternalServerError)
}

// unavailable answers a request that arrived while the server was being
// killed.
func unavailable(w http.ResponseWriter) {
	http.Error(w, "comfyfake: not running", http.StatusServiceUnavailable)
}

// postPrompt is server.py post_prompt (§1.2).
func (s *Server) postPrompt(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxUploadSize) // aiohttp's client_max_size (§1.1)
	var body map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body == nil {
		s.reject()
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		internalError(w)
		return
	}
	// The number is taken before validation, so rejected prompts use one.
	var number queueNumber
	if raw, ok := body["number"]; ok {
		f, err := pyFloatOf(raw)
		if err != nil {
			s.reject()
			internalError(w)
			return
		}
		number = queueNumber{v: f, explicit: true}
	} else {
		s.mu.Lock()
		if s.st == nil {
			s.mu.Unlock()
			unavailable(w)
			return
		}
		n := s.st.number
		s.st.number++
		s.mu.Unlock()
		if front, ok := body["front"]; ok && truthy(front) {
			n = -n
		}
		number = queueNumber{v: float64(n)}
	}
	rawPrompt, ok := body["prompt"]
	if !ok {
		s.reject()
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": promptError{Type: "no_prompt", Message: "No prompt provided",
			Details: "No prompt provided", ExtraInfo: map[string]any{}}, "node_errors": map[string]any{}})
		return
	}
	id := uuid.NewString()
	if raw, ok := body["prompt_id"]; ok {
		id = pyStrJSON(raw)
	}
	var partial []string
	if raw, ok := body["partial_execution_targets"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &partial); err != nil {
			s.reject()
			internalError(w)
			return
		}
	}
	g, err := parseGraph(rawPrompt)
	if err != nil {
		s.reject()
		internalError(w)
		return
	}
	v := s.validatePrompt(g, partial)
	extra := map[string]any{}
	if raw, ok := body["extra_data"]; ok {
		_ = json.Unmarshal(raw, &extra)
		if extra == nil {
			extra = map[string]any{}
		}
	}
	if raw, ok := body["client_id"]; ok {
		var cid any
		_ = json.Unmarshal(raw, &cid)
		extra["client_id"] = cid
	}
	if v.err != nil {
		s.reject()
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": v.err, "node_errors": v.nodeErrors})
		return
	}
	it := &queueItem{number: number, id: id, graph: g, extra: extra, outputs: v.outputs}
	s.mu.Lock()
	if s.st == nil {
		s.mu.Unlock()
		unavailable(w)
		return
	}
	s.stats.Submissions[id]++
	s.enqueueLocked(it)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"prompt_id": id, "number": number, "node_errors": v.nodeErrors})
}

func (s *Server) reject() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Rejected++
	s.notifyLocked()
}

// pyFloatOf is Python's float() of a JSON number or numeric string.
func pyFloatOf(raw json.RawMessage) (float64, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, fmt.Errorf("decoding number: %w", err)
	}
	switch x := v.(type) {
	case float64:
		return x, nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return 0, fmt.Errorf("parsing number %q: %w", x, err)
		}
		return f, nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("number is a %T", v)
}

// pyStrJSON is str() of a decoded JSON value (prompt_id may be any type).
func pyStrJSON(raw json.RawMessage) string {
	var v any
	_ = json.Unmarshal(raw, &v)
	if f, ok := v.(float64); ok && f == float64(int64(f)) {
		return strconv.FormatInt(int64(f), 10)
	}
	return pyStr(v)
}

// truthy is Python's truth value of a decoded JSON value.
func truthy(raw json.RawMessage) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return false
}

// getPrompt is server.py get_prompt: the queue info.
func (s *Server) getPrompt(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	info := s.queueInfoLocked()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, info)
}

// getQueue is server.py get_queue (§1.1): running and pending queue tuples.
func (s *Server) getQueue(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	running, pending := []*queueItem{}, []*queueItem{}
	if s.st != nil {
		if s.st.running != nil {
			running = append(running, s.st.running.item)
		}
		pending = append(pending, s.st.pending...)
	}
	body, err := json.Marshal(map[string]any{"queue_running": running, "queue_pending": pending})
	s.mu.Unlock()
	if err != nil {
		internalError(w)
		return
	}
	writeRawJSON(w, http.StatusOK, body)
}

// postQueue is server.py post_queue (§1.1): clear and/or delete pending
// prompts; unknown and running ids are ignored; always 200.
func (s *Server) postQueue(w http.ResponseWriter, r *http.Request) {
	var body map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		internalError(w)
		return
	}
	var ids []any
	if raw, ok := body["delete"]; ok {
		if err := json.Unmarshal(raw, &ids); err != nil {
			internalError(w)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		unavailable(w)
		return
	}
	if raw, ok := body["clear"]; ok && truthy(raw) {
		s.stats.Clears++
		s.st.pending = nil
		s.sendStatusLocked()
	}
	for _, v := range ids {
		id := pyStr(v)
		removed := s.deleteLocked(id)
		s.stats.Deletes = append(s.stats.Deletes, Delete{PromptID: id, Removed: removed, At: time.Now()})
	}
	s.notifyLocked()
}

// postInterrupt is server.py post_interrupt (§1.1): with a prompt_id, only
// that prompt if it is the running one; without (or with an unreadable
// body), whatever runs. Always 200.
func (s *Server) postInterrupt(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	target := ""
	if v, ok := body["prompt_id"]; ok && v != nil && v != "" && v != false {
		target = pyStr(v)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := Interrupt{PromptID: target, At: time.Now()}
	if s.st != nil && s.st.running != nil {
		rec.Running = s.st.running.item.id
		if target == "" || target == rec.Running {
			s.st.running.stop()
			rec.Applied = true
		}
	}
	s.stats.Interrupts = append(s.stats.Interrupts, rec)
	s.notifyLocked()
}

// getHistory is server.py get_history (§1.1): insertion order, max_items
// and offset; a bad number is a 500.
func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var maxItems, offset *int
	for name, dst := range map[string]**int{"max_items": &maxItems, "offset": &offset} {
		if v, ok := q[name]; ok {
			n, err := strconv.Atoi(v[0])
			if err != nil {
				internalError(w)
				return
			}
			*dst = &n
		}
	}
	writeRawJSON(w, http.StatusOK, s.historyJSON(time.Now(), maxItems, offset))
}

// getHistoryID is server.py get_history_prompt_id (§1.1, §1.3): the entry,
// or {} while it is running, unknown or not yet visible (Faults.HistoryDelay).
func (s *Server) getHistoryID(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	var body []byte
	var err error
	if h, ok := s.historyEntryLocked(id); ok {
		body, err = json.Marshal(map[string]any{id: h})
	} else {
		body = []byte("{}")
	}
	s.mu.Unlock()
	if err != nil {
		internalError(w)
		return
	}
	writeRawJSON(w, http.StatusOK, body)
}

func (s *Server) historyEntryLocked(id string) (*historyEntry, bool) {
	if s.st == nil {
		return nil, false
	}
	h, ok := s.st.historyIndex[id]
	if !ok || time.Now().Before(h.visibleAt) {
		return nil, false
	}
	return h, true
}

// postHistory is server.py post_history: clear and/or delete entries.
func (s *Server) postHistory(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Clear  json.RawMessage `json:"clear"`
		Delete []any           `json:"delete"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		internalError(w)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		unavailable(w)
		return
	}
	if body.Clear != nil && truthy(body.Clear) {
		s.st.history, s.st.historyIndex = nil, map[string]*historyEntry{}
	}
	for _, v := range body.Delete {
		id := pyStr(v)
		if _, ok := s.st.historyIndex[id]; !ok {
			continue
		}
		delete(s.st.historyIndex, id)
		for i, h := range s.st.history {
			if h.id == id {
				s.st.history = append(s.st.history[:i], s.st.history[i+1:]...)
				break
			}
		}
	}
}

// getView is server.py view_image (§1.1): 400 for an empty name, a leading
// "/" or "..", 400 for an unknown type, 403 for a subfolder that escapes,
// 404 when missing; otherwise the bytes with Content-Disposition.
func (s *Server) getView(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("filename") {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	filename := q.Get("filename")
	dir := ""
	for _, d := range []string{dirInput, dirOutput, dirTemp} {
		if cut, ok := strings.CutSuffix(filename, " ["+d+"]"); ok {
			filename, dir = cut, d
		}
	}
	if filename == "" || strings.HasPrefix(filename, "/") || strings.Contains(filename, "..") {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if dir == "" {
		dir = dirOutput
		if q.Has("type") {
			dir = q.Get("type")
		}
	}
	if dir != dirInput && dir != dirOutput && dir != dirTemp {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	base := path.Base(filename)
	key, err := fileKey(dir, path.Join(q.Get("subfolder"), base))
	if err != nil {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	data, ok := s.files.get(key)
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	ctype := mime.TypeByExtension(path.Ext(base))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf("filename=%q", base))
	_, _ = w.Write(data)
}

// postUpload is server.py upload_image (§1.1, §1.7): multipart "image",
// "overwrite", "type", "subfolder"; the answer names the stored file.
func (s *Server) postUpload(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxUploadSize)
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	defer func() { _ = r.MultipartForm.RemoveAll() }()
	parts := r.MultipartForm.File["image"]
	if len(parts) == 0 || parts[0].Filename == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	typ := r.FormValue("type")
	if typ == "" {
		typ = dirInput
	}
	if typ != dirInput && typ != dirOutput && typ != dirTemp {
		internalError(w) // get_dir_by_type leaves the directory unset and raises.
		return
	}
	f, err := parts[0].Open()
	if err != nil {
		internalError(w)
		return
	}
	data, err := io.ReadAll(f)
	_ = f.Close()
	if err != nil {
		internalError(w)
		return
	}
	overwrite := r.FormValue("overwrite") == "true" || r.FormValue("overwrite") == "1"
	subfolder := r.FormValue("subfolder")
	name, reused, err := s.files.upload(typ, subfolder, parts[0].Filename, data, overwrite)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.stats.Uploads = append(s.stats.Uploads, Upload{Filename: parts[0].Filename, Name: name, Subfolder: subfolder, Type: typ,
		Size: len(data), Reused: reused, At: time.Now()})
	s.notifyLocked()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "subfolder": subfolder, "type": typ})
}

// getSystemStats is server.py system_stats in the shape of the recorded
// exchange (a CPU-only server).
func (s *Server) getSystemStats(w http.ResponseWriter, _ *http.Request) {
	const ram = 8 << 30
	writeJSON(w, http.StatusOK, map[string]any{
		"system": map[string]any{
			"os": "posix", "ram_total": ram, "ram_free": ram / 2, "comfyui_version": Version,
			"required_frontend_version": "1.28.7", "installed_templates_version": nil, "required_templates_version": "0.1.95",
			"python_version": "3.11.2 (comfyfake)", "pytorch_version": "comfyfake", "embedded_python": false,
			"argv": []string{"main.py", "--cpu"},
		},
		"devices": []any{map[string]any{"name": "cpu", "type": "cpu", "index": nil, "vram_total": ram, "vram_free": ram / 2,
			"torch_vram_total": ram, "torch_vram_free": ram / 2}},
	})
}

// getObjectInfo is server.py object_info and object_info/{class}: the node
// catalog; an unknown class is {} (§1.1). Clients use it to check that a
// workflow's nodes exist (the recorded exchange asks for ImageBlur).
func (s *Server) getObjectInfo(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{}
	if name := r.PathValue("class"); name != "" {
		if c, ok := s.catalog[name]; ok {
			out[name] = c.objectInfo(s)
		}
	} else {
		for name, c := range s.catalog {
			out[name] = c.objectInfo(s)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// postFaults replaces Faults from a JSON body (control route).
func (s *Server) postFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
		http.Error(w, "decoding faults: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.SetFaults(f); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, http.StatusOK, f)
}
