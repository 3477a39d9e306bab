package comfyui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/task"
)

// state is the executor's part of a handle (Handle.State, version
// executor.HandleVersion).
type state struct {
	// ClientID is the websocket clientId the prompt was submitted with;
	// only a socket with it receives the prompt's messages (§1.6).
	ClientID string `json:"client_id"`
	// Workflow is the template's name.
	Workflow string `json:"workflow"`
	// Tried are the servers the job failed on before this one, in order;
	// Errors their errors.
	Tried  []string      `json:"tried,omitempty"`
	Errors []ServerError `json:"errors,omitempty"`
	// Batch is the job's place in a batch's prompt; nil for a prompt of
	// its own.
	Batch *batchState `json:"batch,omitempty"`
}

// ServerError is a server's failure of a job, kept when the job moved to
// another server.
type ServerError struct {
	Server string `json:"server"`
	Error  string `json:"error"`
}

// Result data keys of a job's Output.Data (a task type copies what it
// keeps among its fields).
const (
	DataPromptID      = "comfy_prompt_id"
	DataServerURL     = "comfy_server_url"
	DataRetryServers  = "comfyui_retry_server_urls"
	DataWorkflow      = "comfy_workflow"
	DataWorkflowData  = "comfy_workflow_data"
	DataServerErrors  = "server_errors"
	fieldWorkflowName = "comfy_workflow"
)

// ErrUnknownWorkflow is a template name the workflows directory lacks.
var ErrUnknownWorkflow = errors.New("unknown workflow")

// prepared is a job's filled template, before the server is chosen.
type prepared struct {
	workflow string
	graph    map[string]any
	urls     map[string]string // input field → image URL
	once     sync.Once
	inputs   map[string][]byte // input field → image bytes, read once
	inputErr error
}

// prepare picks the job's template and fills it from its fields. A
// missing template or field is invalid input.
func (e *Executor) prepare(job *executor.Job) (*prepared, error) {
	var fields map[string]json.RawMessage
	if len(job.Fields) > 0 {
		if err := json.Unmarshal(job.Fields, &fields); err != nil {
			return nil, executor.Errorf(executor.InvalidInput, "reading the task's fields: %w", err)
		}
	}
	t, err := e.templateFor(job.Type, fields[fieldWorkflowName])
	if err != nil {
		return nil, err
	}
	graph, urls, err := t.fill(fields)
	if err != nil {
		return nil, executor.Classify(executor.InvalidInput, err)
	}
	return &prepared{workflow: t.name, graph: graph, urls: urls}, nil
}

// templateFor returns the template a task of taskType uses: the one its
// comfy_workflow field (raw JSON, may be empty) names, else the type's
// default (Settings.Defaults, else the template named like the type). An
// unknown name is invalid input listing the templates.
func (e *Executor) templateFor(taskType string, workflow json.RawMessage) (*template, error) {
	var name string
	if len(workflow) > 0 && string(workflow) != "null" {
		if err := json.Unmarshal(workflow, &name); err != nil {
			return nil, executor.Errorf(executor.InvalidInput, "comfy_workflow must be a template name")
		}
	}
	source := "comfy_workflow"
	if name == "" {
		name, source = e.defaults[taskType], "the default of "+taskType+" tasks"
		if name == "" {
			name = taskType
		}
	}
	t, ok := e.templates[name]
	if !ok {
		return nil, executor.Errorf(executor.InvalidInput, "%w %q (%s); the workflows are: %s", ErrUnknownWorkflow, name, source, strings.Join(e.Workflows(), ", "))
	}
	return t, nil
}

// CheckFields reports, as invalid input, what would stop a task of
// taskType with these fields from running: an unknown template
// (ErrUnknownWorkflow), a field its template needs that the fields lack
// (*MissingFieldsError), an input that is no URL. A task type calls it at
// create to refuse such a task at once.
func (e *Executor) CheckFields(taskType string, fields json.RawMessage) error {
	_, err := e.prepare(&executor.Job{Type: taskType, Fields: fields})
	return err
}

// Start implements executor.Executor: it fills the template and submits
// it to a server with a free slot (see submit).
func (e *Executor) Start(ctx context.Context, job *executor.Job) (executor.Handle, error) {
	p, err := e.prepare(job)
	if err != nil {
		return executor.Handle{}, err
	}
	hs, err := e.submit(ctx, newGroup(job), p, state{ClientID: uuid.NewString(), Workflow: p.workflow}, nil)
	if err != nil {
		return executor.Handle{}, err
	}
	return hs[0], nil
}

// failsOver reports whether err is the server's problem rather than the
// job's: another server may run the job.
func failsOver(err error) bool {
	return executor.Is(err, executor.ProviderUnavailable) || executor.Is(err, executor.ProviderError) ||
		executor.Is(err, executor.RateLimited) || executor.Is(err, executor.Lost)
}

// submit sends the prompt of g's jobs (one job, or a batch) to a server
// not in st.Tried: it takes a slot on an up server, uploads the inputs
// there, saves the jobs' handles with a new prompt id, then POSTs the
// prompt. A server that fails (no answer, 5xx, a failed upload) is added
// to st.Tried with its error and the next one is tried. When none is left
// the error names every server's failure; its category is that of last,
// the error that moved the job off its previous server, or
// provider_unavailable. The handles are g's jobs', in order.
func (e *Executor) submit(ctx context.Context, g *group, p *prepared, st state, last error) ([]executor.Handle, error) {
	job := g.jobs[0]
	for {
		up, down := e.candidates(ctx, st.Tried)
		if len(up) == 0 {
			return nil, e.exhausted(st, down, last)
		}
		srv, release, err := e.slots.Acquire(ctx, e.name, holderOf(job), up)
		if err != nil {
			return nil, err
		}
		hs, err := e.submitTo(ctx, g, p, st, srv)
		if err == nil {
			live := g.live()
			if live[0] != 0 {
				// The slot's holder was left out of the batch (its task
				// was cancelled): a shared slot would free at once. The
				// first member in it holds it instead.
				release = e.retake(ctx, srv, g.jobs[live[0]], release)
			}
			id := hs[live[0]].ExternalID
			e.hold(id, release)
			e.addMembers(id, memberIndexes(g))
			return hs, nil
		}
		release()
		if !failsOver(err) || ctx.Err() != nil {
			return nil, serverError(srv.URL, err)
		}
		st.Tried = append(st.Tried, srv.URL)
		st.Errors = append(st.Errors, ServerError{Server: srv.URL, Error: detail(err)})
		for _, i := range g.live() {
			noteFailover(ctx, g.jobs[i], srv.URL, err)
		}
		last = err
	}
}

// retake gives back the slot on srv that release frees and takes one
// there under job's run, returning its release. It is given back first:
// with one slot, taking a second would wait for it. When none can be
// taken (the start's context ended) the prompt, already sent, holds none.
func (e *Executor) retake(ctx context.Context, srv Server, job *executor.Job, release func()) func() {
	release()
	_, r, err := e.slots.Acquire(ctx, e.name, holderOf(job), []Server{srv})
	if err != nil {
		return func() {}
	}
	return r
}

// submitTo uploads the inputs of g's prompt to srv, saves its jobs'
// handles and submits the prompt there.
func (e *Executor) submitTo(ctx context.Context, g *group, p *prepared, st state, srv Server) ([]executor.Handle, error) {
	c := e.client(srv.URL)
	names, err := e.upload(ctx, g.jobs[0], p, c)
	if err != nil {
		return nil, err
	}
	h := executor.Handle{Executor: e.name, Server: srv.URL, ExternalID: uuid.NewString(), Version: executor.HandleVersion}
	// The handles are saved before the prompt is sent (§1.5 step 1): a
	// crash after the POST leaves handles recovery can find the prompt by.
	hs, err := g.save(ctx, h, st)
	if err != nil {
		return nil, fmt.Errorf("saving the handle before submitting: %w", err)
	}
	graph := resolveBatch(p.graph, names, len(g.live()))
	rctx, cancel := context.WithTimeout(ctx, e.requestTimeout)
	defer cancel()
	ans, err := c.submit(rctx, promptRequest{Prompt: graph, ClientID: st.ClientID, PromptID: h.ExternalID})
	if err != nil {
		if ctx.Err() != nil {
			// The run ended while the prompt was being sent: the server
			// may have queued it, so it is cancelled by its id.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.requestTimeout)
			_ = e.Cancel(cctx, h)
			cancel()
		}
		return nil, err
	}
	g.sent = true
	if ans.PromptID != "" && ans.PromptID != h.ExternalID {
		// A server older than client-chosen ids (§1.5 step 1) chose its own.
		h.ExternalID = ans.PromptID
		if hs, err = g.save(ctx, h, st); err != nil {
			return nil, fmt.Errorf("saving the handle of prompt %s: %w", ans.PromptID, err)
		}
	}
	return hs, nil
}

// upload puts the job's input images on the server and returns their
// names there. The images are read once per job, uploaded once per
// server tried.
func (e *Executor) upload(ctx context.Context, job *executor.Job, p *prepared, c *client) (map[string]string, error) {
	if len(p.urls) == 0 {
		return nil, nil
	}
	p.once.Do(func() {
		if job.OpenInput == nil {
			p.inputErr = executor.Errorf(executor.InvalidInput, "workflow %s takes input images, which this task type does not provide", p.workflow)
			return
		}
		p.inputs = map[string][]byte{}
		for f, u := range p.urls {
			data, err := job.OpenInput(ctx, u)
			if err != nil {
				p.inputErr = executor.Classify(executor.InvalidInput, fmt.Errorf("reading input %s: %w", f, err))
				return
			}
			p.inputs[f] = data
		}
	})
	if p.inputErr != nil {
		return nil, p.inputErr
	}
	names := map[string]string{}
	for f, data := range p.inputs {
		rctx, cancel := context.WithTimeout(ctx, e.requestTimeout)
		name, err := c.upload(rctx, uploadName(f, data), data)
		cancel()
		if err != nil {
			return nil, annotate(err, "uploading input "+f)
		}
		names[f] = name
	}
	return names, nil
}

// uploadName names an upload after its field and content, so the same
// image reuses its name on a server and different ones do not collide
// (§1.7 upload name collision).
func uploadName(field string, data []byte) string {
	return fmt.Sprintf("%s-%s.png", field, uuid.NewSHA1(uuid.NameSpaceOID, data).String()[:13])
}

// exhausted is the error of a job no server is left for.
func (e *Executor) exhausted(st state, down map[string]error, last error) error {
	var parts []string
	for _, se := range st.Errors {
		parts = append(parts, fmt.Sprintf("server %s: %s", se.Server, se.Error))
	}
	for _, s := range e.servers {
		if err, ok := down[s.URL]; ok && !slices.Contains(st.Tried, s.URL) {
			parts = append(parts, fmt.Sprintf("server %s is down: %s", s.URL, detail(err)))
		}
	}
	c := executor.ProviderUnavailable
	if last != nil {
		// A prompt lost by a restarted server stays lost (the engine's
		// retry submits it afresh, to any server); an out-of-memory error
		// stays the server's error.
		c = executor.CategoryOf(last)
	}
	server := ""
	if len(st.Tried) > 0 {
		server = st.Tried[len(st.Tried)-1]
	}
	msg := "no ComfyUI server is left to try"
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, "; ")
	}
	return &executor.Error{Category: c, Server: server, Err: errors.New(msg)}
}

// annotate prefixes a classified error's message with context, keeping
// its category, without repeating the "executor: category:" prefix.
func annotate(err error, context string) error {
	e, ok := err.(*executor.Error)
	if !ok {
		return fmt.Errorf("%s: %w", context, err)
	}
	return &executor.Error{Category: e.Category, Server: e.Server, Err: fmt.Errorf("%s: %w", context, e.Err)}
}

// detail is err's message for a server's error record: its category and
// message.
func detail(err error) string {
	if e, ok := err.(*executor.Error); ok {
		return fmt.Sprintf("%s: %v", e.Category, e.Err)
	}
	return err.Error()
}

// serverError names the server in a classified error.
func serverError(server string, err error) error {
	var e *executor.Error
	if errors.As(err, &e) && e.Server == "" {
		e.Server = server
	}
	return err
}

// decodeState reads the handle's state; a handle of another version is
// lost (executor.HandleVersion).
func decodeState(h executor.Handle) (state, error) {
	var st state
	if h.Version != executor.HandleVersion {
		return st, executor.Errorf(executor.Lost, "handle version %d is not %d", h.Version, executor.HandleVersion)
	}
	if len(h.State) > 0 {
		if err := json.Unmarshal(h.State, &st); err != nil {
			return st, executor.Errorf(executor.Lost, "reading the handle's state: %w", err)
		}
	}
	return st, nil
}

// Cancel implements executor.Executor: a pending prompt is deleted from
// the queue, a running one interrupted by id (§1.1 POST /queue, POST
// /interrupt); one in neither has ended. A batch member's cancel only
// ends this process's interest in its image while other members this
// process follows still want theirs; the last one cancels the prompt.
func (e *Executor) Cancel(ctx context.Context, h executor.Handle) error {
	if st, err := decodeState(h); err == nil && st.Batch != nil && !e.leave(h.ExternalID, st.Batch.Index) {
		return nil
	}
	e.markCancelled(h.ExternalID)
	e.releaseIdle(h.ExternalID)
	c := e.client(h.Server)
	running, pending, err := c.queued(ctx, h.ExternalID)
	if err != nil {
		return serverError(h.Server, err)
	}
	if pending {
		if err := c.deleteQueued(ctx, h.ExternalID); err != nil {
			return serverError(h.Server, err)
		}
		// It may have started between the two calls.
		if running, _, err = c.queued(ctx, h.ExternalID); err != nil {
			return serverError(h.Server, err)
		}
	}
	if running {
		if err := c.interrupt(ctx, h.ExternalID); err != nil {
			return serverError(h.Server, err)
		}
	}
	return nil
}

// releaseIdle gives back the slot of a prompt no Wait follows (a job
// whose run ended before waiting).
func (e *Executor) releaseIdle(id string) {
	e.mu.Lock()
	t, ok := e.tracked[id]
	idle := ok && t.waiters == 0
	e.mu.Unlock()
	if idle {
		e.untrack(id)
	}
}

// Recover implements executor.Executor by prompt id (§1.5 resume): the
// history, then the queue, then the history again. A prompt in neither is
// lost. A prompt still queued or running takes a slot on its server.
func (e *Executor) Recover(ctx context.Context, job *executor.Job, h executor.Handle) (executor.Handle, error) {
	if _, err := decodeState(h); err != nil {
		return h, err
	}
	i := slices.IndexFunc(e.servers, func(s Server) bool { return s.URL == h.Server })
	if i < 0 {
		return h, executor.Errorf(executor.Lost, "server %s is no longer configured", h.Server)
	}
	found, live, err := e.locate(ctx, h)
	if err != nil {
		return h, serverError(h.Server, err)
	}
	switch {
	case live:
		// The members of a batch recovered in this process share the
		// prompt's one slot.
		if e.claimSlot(h.ExternalID) {
			_, release, err := e.slots.Acquire(ctx, e.name, holderOf(job), e.servers[i:i+1])
			if err != nil {
				e.abandonSlot(h.ExternalID)
				return h, err
			}
			e.hold(h.ExternalID, release)
		}
		if st, _ := decodeState(h); st.Batch != nil {
			e.addMembers(h.ExternalID, []int{st.Batch.Index})
		}
	case !found:
		return h, &executor.Error{Category: executor.Lost, Server: h.Server,
			Err: fmt.Errorf("prompt %s is in neither the history nor the queue of %s (the server restarted or forgot it)", h.ExternalID, h.Server)}
	}
	return h, nil
}

// locate looks a prompt up: found when the history has it (finished) or
// the queue does (live).
func (e *Executor) locate(ctx context.Context, h executor.Handle) (found, live bool, err error) {
	c := e.client(h.Server)
	for attempt := range 2 {
		entry, err := c.history(ctx, h.ExternalID)
		if err != nil || entry != nil {
			return entry != nil, false, err
		}
		if attempt == 1 {
			break
		}
		running, pending, err := c.queued(ctx, h.ExternalID)
		if err != nil || running || pending {
			return running || pending, running || pending, err
		}
	}
	return false, false, nil
}

// TriedServers returns the servers a handle's job failed on before its
// current server, in order (the original's comfyui_retry_server_urls).
func TriedServers(h executor.Handle) []string {
	st, err := decodeState(h)
	if err != nil {
		return nil
	}
	return st.Tried
}

// noteFailover records, among the task's errors, that the job left server
// after err: the task may still complete on another server, and its
// history then says why it moved. A failure to record it does not stop
// the job (the server is also in comfyui_retry_server_urls).
func noteFailover(ctx context.Context, job *executor.Job, server string, err error) {
	if job.AddError == nil {
		return
	}
	category := task.CategoryProviderUnavailable
	var xe *executor.Error
	if errors.As(err, &xe) && xe.Category != "" {
		category = string(xe.Category)
	}
	_ = job.AddError(ctx, task.Error{Message: fmt.Sprintf("server %s failed, trying another: %s", server, detail(err)), Category: category})
}
