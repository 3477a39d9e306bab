// Package comfyfake is a fake ComfyUI server for tests: a real HTTP and
// websocket server on loopback that speaks ComfyUI 0.3.65's API as described
// in /work/shared/reference/executors.md §1 and recorded in
// reference/comfyui-exchange.json. It runs the model-free nodes of §1.4 for
// real (tiny PNGs), keeps its queue and history in memory like ComfyUI,
// executes one prompt at a time, and has knobs for the failures of §1.7–1.8:
// restarts that lose state, refused connections, 5xx answers, a websocket
// that stalls, late history, node exceptions and out-of-memory errors. It
// records what tests assert on (submissions, interrupts, deletes, uploads,
// concurrency) in Stats.
//
// Every behaviour's comment names the section of executors.md it comes
// from; where the ComfyUI source (Comfy-Org/ComfyUI v0.3.64, the snapshot
// that section cites) is more precise than the reference, the comment says so.
//
// Where the fake departs from the reference, on purpose or by omission:
//   - A LoadImage of a file not in input/ fails validation with
//     custom_validation_failed ("image - Invalid image file: x.png"), as
//     nodes.py LoadImage.VALIDATE_INPUTS makes it; §1.2 and §1.4 say
//     value_not_in_list, which the source only gives for other lists
//     (ImageScale's upscale_method, for one).
//   - Closing a socket unregisters whatever socket holds its clientId, so a
//     replaced socket closed late silences its replacement: server.py's
//     websocket_handler does this; §1.6 only says "replaces".
//   - Not served: binary preview frames, progress text, /upload/mask,
//     /models, /embeddings, /extensions, /view_metadata, and /view's
//     preview= and channel= (the file is returned as stored).
//   - execution_error's traceback and the image entries of current_inputs
//     are placeholders; a cycle of links fails as a KeyError, not
//     ComfyUI's dependency-cycle error; "area" and "lanczos" scale
//     bilinearly and bicubically.
package comfyfake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Version is the ComfyUI version the fake reports in /system_stats, the one
// of the recorded exchange.
const Version = "0.3.65"

// Defaults of Options.
const (
	// DefaultMaxUploadSize is ComfyUI's --max-upload-size 100 (MB), §1.1.
	DefaultMaxUploadSize = 100 << 20
	// DefaultMaxPixels is the largest batch (width×height×batch) the fake
	// computes before raising an out-of-memory error: 64 megapixels.
	DefaultMaxPixels = 64 << 20
)

// Options configure a Server. The zero value is a fast, faithful server on
// a random loopback port.
type Options struct {
	// Addr is the listen address; "" is 127.0.0.1:0 (a free port). After a
	// Kill or Restart the server listens on the same address again.
	Addr string
	// NodeDelay is how long each executed (not cached) node takes, so tests
	// can observe a running prompt. Interrupts cut it short.
	NodeDelay time.Duration
	// Steps makes executed nodes report progress: Steps progress messages
	// per node (value 1…Steps, max Steps), each after StepDelay, as a
	// sampler does through ComfyUI's progress hook (§1.6 progress). 0 sends
	// none, as the recorded model-free nodes do.
	Steps int
	// StepDelay is the time before each progress step.
	StepDelay time.Duration
	// StepClass limits Steps to nodes of this class_type; "" means every
	// executed node.
	StepClass string
	// MaxPixels is the largest width×height×batch a node may produce before
	// it raises torch.OutOfMemoryError (§1.7 "OOM-style error"); 0 is
	// DefaultMaxPixels, negative is no limit.
	MaxPixels int
	// MaxUploadSize caps an upload's body in bytes (413 beyond it); 0 is
	// DefaultMaxUploadSize.
	MaxUploadSize int64
	// ControlRoutes adds /_comfyfake/stats, /_comfyfake/faults and
	// /_comfyfake/restart, so a test driving the fake in another process
	// (cmd/comfyfake) can read Stats and flip Faults. Not part of ComfyUI.
	ControlRoutes bool
	// OnRequest, when set, is shown every request as it arrives (its
	// method, path and headers, such as a traceparent) before it is
	// served; it must not read the body. Not part of ComfyUI.
	OnRequest func(r *http.Request)
	// Logger receives the fake's log lines; nil discards them.
	Logger *slog.Logger
	// Faults are the failure knobs in force at start; SetFaults changes them.
	Faults Faults
}

// Faults are the failure modes of executors.md §1.7–1.8 that can be switched
// on and off while the server runs.
type Faults struct {
	// HTTPStatus, when not 0, answers every request (websocket upgrades
	// too) with this status, for failover tests (a 502 from a proxy in
	// front of a dead ComfyUI, a 500). Connection refused is Kill.
	HTTPStatus int `json:"http_status,omitempty"`
	// StallAfter, when not 0, makes each websocket stop receiving after it
	// was sent this many messages (the connect status included), while the
	// socket stays open and prompts keep executing: the stalls of §1.8
	// (#3128, #9393, #15240).
	StallAfter int `json:"stall_after,omitempty"`
	// HistoryDelay hides a finished prompt's /history entry until this long
	// after its done marker (executing{node:null}); ComfyUI writes it just
	// before (§1.5), so this widens the race §1.5 describes for
	// execution_success.
	HistoryDelay time.Duration `json:"history_delay,omitempty"`
	// FailClass makes every executed node of this class_type raise an
	// exception: execution_error and history status_str "error" (§1.7
	// "node exception").
	FailClass string `json:"fail_class,omitempty"`
	// FailOOM makes FailClass's exception a torch.OutOfMemoryError with
	// ComfyUI's OOM tips (§1.6 execution_error, §1.7).
	FailOOM bool `json:"fail_oom,omitempty"`
}

// Validate reports the first invalid field.
func (o Options) Validate() error {
	switch {
	case o.NodeDelay < 0:
		return errors.New("comfyfake: NodeDelay must not be negative")
	case o.Steps < 0:
		return errors.New("comfyfake: Steps must not be negative")
	case o.StepDelay < 0:
		return errors.New("comfyfake: StepDelay must not be negative")
	case o.MaxUploadSize < 0:
		return errors.New("comfyfake: MaxUploadSize must not be negative")
	}
	return o.Faults.validate()
}

func (f Faults) validate() error {
	switch {
	case f.HTTPStatus != 0 && (f.HTTPStatus < 100 || f.HTTPStatus > 599):
		return fmt.Errorf("comfyfake: Faults.HTTPStatus %d is not an HTTP status", f.HTTPStatus)
	case f.StallAfter < 0:
		return errors.New("comfyfake: Faults.StallAfter must not be negative")
	case f.HistoryDelay < 0:
		return errors.New("comfyfake: Faults.HistoryDelay must not be negative")
	}
	return nil
}

// Server is a fake ComfyUI server. Create it with New or Start, stop it
// with Close.
type Server struct {
	opts    Options
	log     *slog.Logger
	catalog map[string]*nodeClass
	files   *fileStore
	handler http.Handler

	// lifeMu serialises Start, Kill, Restart and Close.
	lifeMu     sync.Mutex
	addr       string
	httpServer *http.Server
	ln         net.Listener
	stopWorker context.CancelFunc
	workerDone chan struct{}
	closed     bool

	// mu guards everything below, and every websocket send happens under
	// it so that messages leave in the order ComfyUI would send them.
	mu      sync.Mutex
	faults  Faults
	st      *state
	gen     int // incremented by every Kill: work of an older generation is discarded
	sockets map[string]*wsConn
	conns   map[*wsConn]struct{}
	stats   Stats
	changed chan struct{}
	// executing counts prompts between the worker taking them and their
	// end, to measure Stats.MaxConcurrent rather than assume it.
	executing int
	// resume is nil unless Pause holds nodes; Resume closes it.
	resume chan struct{}
}

// New returns a server that is not listening yet; call Start.
func New(opts Options) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.MaxUploadSize == 0 {
		opts.MaxUploadSize = DefaultMaxUploadSize
	}
	if opts.MaxPixels == 0 {
		opts.MaxPixels = DefaultMaxPixels
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		opts:    opts,
		log:     log,
		catalog: newCatalog(),
		files:   newFileStore(),
		addr:    opts.Addr,
		faults:  opts.Faults,
		sockets: map[string]*wsConn{},
		conns:   map[*wsConn]struct{}{},
		stats:   newStats(),
		changed: make(chan struct{}),
	}
	s.handler = s.routes()
	return s, nil
}

// StartT starts a server for a test and closes it when the test ends.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatalf("comfyfake: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("comfyfake: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start listens (on the same address as before after a Kill) and starts
// the prompt worker with an empty queue and history, like a freshly started
// ComfyUI (§1.3 "not persisted", §1.5 resume).
func (s *Server) Start(ctx context.Context) error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closed {
		return errors.New("comfyfake: server is closed")
	}
	if s.httpServer != nil {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("comfyfake: listening on %s: %w", s.addr, err)
	}
	s.addr, s.ln = ln.Addr().String(), ln
	s.files.dropTemp()
	s.startWorkerLocked()
	s.httpServer = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	go func(srv *http.Server) {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("comfyfake: serving", "error", err)
		}
	}(s.httpServer)
	s.log.Info("comfyfake: listening", "url", "http://"+s.addr)
	return nil
}

// URL is the server's base URL, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	return "http://" + s.addr
}

// Kill stops the server the way a crash does: the listener closes (new
// connections are refused), every connection and websocket is dropped, the
// running prompt stops without a history entry, and the in-memory queue,
// history and cache are gone (§1.3, §1.5 "lost"). Files in input/ and
// output/ stay, like files on disk. Start brings it back on the same
// address.
func (s *Server) Kill() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.httpServer == nil {
		return
	}
	s.stopWorkerLocked()
	_ = s.httpServer.Close()
	// Serve may not have registered the listener with the server yet, so
	// Close alone could leave it accepting for a moment: close it here.
	_ = s.ln.Close()
	s.httpServer, s.ln = nil, nil
}

// startWorkerLocked gives the server an empty state and a prompt worker;
// s.lifeMu must be held.
func (s *Server) startWorkerLocked() {
	s.mu.Lock()
	s.st = newState()
	gen := s.gen
	s.notifyLocked()
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stopWorker, s.workerDone = cancel, done
	go func() {
		defer close(done)
		s.worker(ctx, gen)
	}()
}

// stopWorkerLocked ends the worker, abandons the running prompt and drops
// the state and every websocket; s.lifeMu must be held.
func (s *Server) stopWorkerLocked() {
	if s.stopWorker == nil {
		return
	}
	s.mu.Lock()
	s.gen++
	s.st = nil
	for c := range s.conns {
		c.close()
	}
	s.conns = map[*wsConn]struct{}{}
	s.sockets = map[string]*wsConn{}
	s.notifyLocked()
	s.mu.Unlock()
	s.stopWorker()
	<-s.workerDone
	s.stopWorker = nil
}

// reset is a restart that keeps the listener (no connection-refused
// window): the control route's restart, whose own request must survive.
func (s *Server) reset() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.httpServer == nil {
		return
	}
	s.stopWorkerLocked()
	s.files.dropTemp()
	s.mu.Lock()
	s.stats.Restarts++
	s.mu.Unlock()
	s.startWorkerLocked()
}

// Restart is Kill then Start: the same address, an empty queue and history,
// prompt numbers from 0 again, temp/ wiped (§1.5, §1.7 "process restart").
func (s *Server) Restart(ctx context.Context) error {
	s.lifeMu.Lock()
	s.killLocked()
	s.mu.Lock()
	s.stats.Restarts++
	s.mu.Unlock()
	s.lifeMu.Unlock()
	return s.Start(ctx)
}

// Close stops the server for good. It is idempotent.
func (s *Server) Close() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	s.killLocked()
	s.closed = true
}

// SetFaults replaces the failure knobs.
func (s *Server) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	return nil
}

// Faults returns the failure knobs in force.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// DropWebsockets closes every websocket while the server keeps running
// (§1.7 "WS drop"); clients must reconnect, and messages sent meanwhile are
// lost (§1.6 "dropped (no buffering)").
func (s *Server) DropWebsockets() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.close()
	}
}

// PutFile stores a file as if it were on the server's disk, in dir
// ("input", "output" or "temp"), for tests that need an input without an
// upload.
func (s *Server) PutFile(dir, name string, data []byte) error {
	key, err := fileKey(dir, name)
	if err != nil || (dir != dirInput && dir != dirOutput && dir != dirTemp) {
		return fmt.Errorf("comfyfake: bad file %s/%s", dir, name)
	}
	s.files.put(key, data)
	return nil
}

// File returns a file's bytes from dir ("input", "output" or "temp").
func (s *Server) File(dir, name string) ([]byte, bool) {
	key, err := fileKey(dir, name)
	if err != nil {
		return nil, false
	}
	return s.files.get(key)
}

// Pause holds every node that is about to execute (after its "executing"
// message, so the prompt is visibly running) until Resume. It lets a test
// keep a prompt running, or queued behind one, for exactly as long as it
// needs. Interrupts and Kill still end a held prompt.
func (s *Server) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resume == nil {
		s.resume = make(chan struct{})
	}
}

// Resume releases the nodes Pause holds.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resume != nil {
		close(s.resume)
		s.resume = nil
	}
}
