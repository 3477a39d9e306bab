// Package comfyui is the executor of a pool of ComfyUI servers, speaking
// the API of /work/shared/reference/executors.md §1 (the comments cite its
// sections).
//
// A job fills a workflow template (template.go) with the task's fields,
// uploads its input images, takes a slot on a server that is up (Slots,
// the health probe), saves its handle with a prompt id it chose and only
// then submits the prompt (§1.5 step 1), so a crash in between leaves a
// handle whose prompt recovery finds or reports lost. Wait follows the
// server's websocket for progress and the done marker and polls /history
// and /queue all along (the websocket is known to stall, §1.8), fetches
// every output with /view into the artifact store, and fails over to a
// server not tried yet when the server goes away or fails for reasons of
// its own. Cancel deletes a pending prompt from the queue and interrupts a
// running one; Recover looks the prompt up by id (§1.5 resume). Jobs whose
// templates take {{batch_size}} and that differ only in their seed may run
// as one prompt (batch.go, executor.Batcher).
package comfyui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/telemetry"
)

// Kind is the executor type name of ComfyUI in the config file.
const Kind = "comfyui"

// ServerSettings is one server of the pool.
type ServerSettings struct {
	// URL is the server's base URL, e.g. http://gpu-1:8188.
	URL string `json:"url"`
	// Slots is how many prompts the server may hold at once, running
	// and queued (default 1).
	Slots int `json:"slots"`
}

// Settings are the executor's settings in the config file
// (`executors: {NAME: {type: comfyui, …}}`).
type Settings struct {
	// Servers is the pool; at least one.
	Servers []ServerSettings `json:"servers"`
	// Workflows is the directory of `<name>.json` API-format templates,
	// relative to the config file.
	Workflows string `json:"workflows"`
	// Defaults maps a task type to the template its tasks use when they
	// name no comfy_workflow; without an entry, the template named like
	// the task type.
	Defaults map[string]string `json:"defaults"`
	// PollInterval is how often /history and /queue are read while a
	// prompt runs, whatever the websocket says (default "1s").
	PollInterval string `json:"poll_interval"`
	// ProbeInterval is how long a server found down is skipped before it
	// is probed again (default "10s").
	ProbeInterval string `json:"probe_interval"`
	// DownAfter is how long a server running a prompt may fail to answer
	// before the prompt is submitted to another server (default "30s").
	DownAfter string `json:"down_after"`
	// LostAfter is how long a prompt may be in neither the queue nor the
	// history before Wait calls it lost, which covers history written
	// late (§1.5) (default "10s").
	LostAfter string `json:"lost_after"`
	// RequestTimeout bounds each HTTP call but the output downloads
	// (default "30s").
	RequestTimeout string `json:"request_timeout"`
}

// Options are what the process hands the executor besides its settings.
type Options struct {
	// Dir is the config file's directory, which Workflows is relative to.
	Dir string
	// Client is the HTTP client (nil: a default client). Its Timeout, if
	// any, is not applied to the websocket, which stays open for a whole
	// prompt; request_timeout bounds the other calls.
	Client *http.Client
	// Slots is the slot accounting; nil is a new LocalSlots. Executors
	// sharing one pool of servers must share it.
	Slots Slots
}

// Server is a server of the pool with its slot count.
type Server struct {
	// URL is the server's base URL without a trailing slash.
	URL string
	// Slots is how many prompts it may hold at once.
	Slots int
}

// Executor runs jobs on a pool of ComfyUI servers. Its methods are safe
// for concurrent use.
type Executor struct {
	name      string
	servers   []Server
	templates map[string]*template
	defaults  map[string]string
	slots     Slots
	hc        *http.Client
	// wsClient is hc without a Timeout (coder/websocket refuses one).
	wsClient *http.Client

	pollInterval, probeInterval, downAfter, lostAfter, requestTimeout time.Duration

	healthMu sync.Mutex
	health   map[string]health

	mu        sync.Mutex
	tracked   map[string]*tracked
	cancelled map[string]bool
}

// health is what the executor last learnt of a server.
type health struct {
	down bool
	err  error
	at   time.Time
}

// tracked is a prompt this process follows: its slot and its waiters.
type tracked struct {
	release func()
	// acquiring: a recovering run is taking the prompt's slot.
	acquiring bool
	// live are the batch members this process follows (starts or
	// recovers and has not seen end): the prompt is cancelled only when
	// none is left.
	live    map[int]bool
	waiters int
	// kick wakes the prompt's Wait (a cancel happened).
	kick chan struct{}
}

// maxCancelled bounds the cancelled prompt ids remembered.
const maxCancelled = 4096

var (
	_ executor.Executor = (*Executor)(nil)
	_ executor.Pinger   = (*Executor)(nil)
)

// New returns the ComfyUI executor called name.
func New(name string, s Settings, o Options) (*Executor, error) {
	e := &Executor{
		name: name, defaults: s.Defaults, slots: o.Slots, hc: o.Client,
		health: map[string]health{}, tracked: map[string]*tracked{}, cancelled: map[string]bool{},
	}
	if len(s.Servers) == 0 {
		return nil, errors.New("servers: at least one server is required")
	}
	for i, srv := range s.Servers {
		u := strings.TrimRight(srv.URL, "/")
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, fmt.Errorf("servers[%d].url %q: want an http:// or https:// URL", i, srv.URL)
		}
		if srv.Slots < 0 {
			return nil, fmt.Errorf("servers[%d].slots must not be negative", i)
		}
		if slices.ContainsFunc(e.servers, func(x Server) bool { return x.URL == u }) {
			return nil, fmt.Errorf("servers[%d].url %q is listed twice", i, srv.URL)
		}
		e.servers = append(e.servers, Server{URL: u, Slots: max(srv.Slots, 1)})
	}
	if s.Workflows == "" {
		return nil, errors.New("workflows: a directory of workflow templates is required")
	}
	dir := s.Workflows
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(o.Dir, dir)
	}
	var err error
	if e.templates, err = loadTemplates(dir); err != nil {
		return nil, fmt.Errorf("workflows: %w", err)
	}
	for typ, wf := range s.Defaults {
		if _, ok := e.templates[wf]; !ok {
			return nil, fmt.Errorf("defaults.%s: no workflow %q in %s", typ, wf, dir)
		}
	}
	for _, d := range []struct {
		name, value string
		def         time.Duration
		dst         *time.Duration
	}{
		{"poll_interval", s.PollInterval, time.Second, &e.pollInterval},
		{"probe_interval", s.ProbeInterval, 10 * time.Second, &e.probeInterval},
		{"down_after", s.DownAfter, 30 * time.Second, &e.downAfter},
		{"lost_after", s.LostAfter, 10 * time.Second, &e.lostAfter},
		{"request_timeout", s.RequestTimeout, 30 * time.Second, &e.requestTimeout},
	} {
		*d.dst = d.def
		if d.value == "" {
			continue
		}
		v, err := time.ParseDuration(d.value)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%s %q: want a positive duration such as 2s", d.name, d.value)
		}
		*d.dst = v
	}
	if e.slots == nil {
		e.slots = NewLocalSlots()
	}
	// Every call (/prompt, /history, /view, /interrupt, the websocket's
	// upgrade…) made for a run is a client span of its trace, with
	// traceparent; the health probes are outside any trace and make none.
	e.hc = telemetry.WrapClient(e.hc)
	ws := *e.hc
	ws.Timeout = 0
	e.wsClient = &ws
	return e, nil
}

// Name implements executor.Executor.
func (e *Executor) Name() string { return e.name }

// Capacity implements executor.Capacity: the pool's slots, the most
// prompts it holds at once, is the executor's default concurrency, so a
// task is claimed only when a slot may be free.
func (e *Executor) Capacity() int {
	n := 0
	for _, s := range e.servers {
		n += s.Slots
	}
	return n
}

// Servers returns the pool.
func (e *Executor) Servers() []Server { return slices.Clone(e.servers) }

// Workflows returns the names of the workflow templates, sorted.
func (e *Executor) Workflows() []string {
	out := make([]string, 0, len(e.templates))
	for n := range e.templates {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// client returns the API client of server url, which records in the
// pool's health whether the server answered.
func (e *Executor) client(url string) *client {
	return &client{base: url, hc: e.hc, observe: func(err error) { e.observe(url, err) }}
}

// observe records a call's outcome: no answer (or a proxy's 502/503/504)
// marks the server down, any other answer up.
func (e *Executor) observe(url string, err error) {
	e.healthMu.Lock()
	defer e.healthMu.Unlock()
	if executor.Is(err, executor.ProviderUnavailable) {
		e.health[url] = health{down: true, err: err, at: time.Now()}
		return
	}
	e.health[url] = health{at: time.Now()}
}

// probe is the health probe: GET /system_stats (§1.1). A probe that runs
// out of time records the server down: client.do records no call whose
// context ended (a caller's cancel says nothing of the server), but a
// server that accepts and never answers must not stay up and unchecked.
func (e *Executor) probe(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, e.requestTimeout)
	defer cancel()
	err := e.client(url).systemStats(ctx)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = executor.Errorf(executor.ProviderUnavailable, "no answer in time: %w", err)
		e.observe(url, err)
	}
	return err
}

// Ping implements executor.Pinger: it probes every server; the pool is up
// when one answers, else the error names each server's failure.
func (e *Executor) Ping(ctx context.Context) error {
	errs := make([]error, len(e.servers))
	var wg sync.WaitGroup
	for i, s := range e.servers {
		wg.Go(func() { errs[i] = e.probe(ctx, s.URL) })
	}
	wg.Wait()
	var failed []string
	for i, err := range errs {
		if err == nil {
			return nil
		}
		failed = append(failed, fmt.Sprintf("%s: %v", e.servers[i].URL, err))
	}
	return executor.Errorf(executor.ProviderUnavailable, "no ComfyUI server answers: %s", strings.Join(failed, "; "))
}

// candidates returns the servers a prompt may go to: those not in tried
// that are up. A server found down is skipped until ProbeInterval has
// passed, then probed again; when every untried server is marked down,
// all are probed now rather than failing on old news. down holds the
// errors of the servers left out.
func (e *Executor) candidates(ctx context.Context, tried []string) (up []Server, down map[string]error) {
	down = map[string]error{}
	var stale, fresh []Server
	e.healthMu.Lock()
	for _, s := range e.servers {
		if slices.Contains(tried, s.URL) {
			continue
		}
		h := e.health[s.URL]
		switch {
		case !h.down:
			up = append(up, s)
		case time.Since(h.at) >= e.probeInterval:
			stale = append(stale, s)
		default:
			fresh = append(fresh, s)
			down[s.URL] = h.err
		}
	}
	e.healthMu.Unlock()
	if len(up) == 0 {
		stale = append(stale, fresh...)
	}
	for _, s := range stale {
		if err := e.probe(ctx, s.URL); err != nil {
			down[s.URL] = err
			continue
		}
		delete(down, s.URL)
		up = append(up, s)
	}
	return up, down
}

// track returns the prompt's entry, made when absent.
func (e *Executor) track(id string) *tracked {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tracked[id]
	if !ok {
		t = &tracked{kick: make(chan struct{}, 1), live: map[int]bool{}}
		e.tracked[id] = t
	}
	return t
}

// hold records the slot of a prompt this process submitted or recovered.
func (e *Executor) hold(id string, release func()) {
	t := e.track(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	if t.release != nil {
		t.release()
	}
	t.release, t.acquiring = release, false
}

// untrack gives the prompt's slot back and forgets it.
func (e *Executor) untrack(id string) {
	e.mu.Lock()
	t, ok := e.tracked[id]
	delete(e.tracked, id)
	e.mu.Unlock()
	if ok && t.release != nil {
		t.release()
	}
}

// markCancelled remembers that this process cancelled the prompt, so its
// end reads as a cancel, and wakes its Wait.
func (e *Executor) markCancelled(id string) {
	e.mu.Lock()
	if len(e.cancelled) >= maxCancelled {
		clear(e.cancelled)
	}
	e.cancelled[id] = true
	t := e.tracked[id]
	e.mu.Unlock()
	if t != nil {
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
}

func (e *Executor) wasCancelled(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cancelled[id]
}
