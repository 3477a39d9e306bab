package comfyui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // output sizes
	_ "image/png"
	"mime"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	_ "golang.org/x/image/webp"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/task"
)

// finishPoll is how soon /history is read again after the websocket said
// the prompt ended but the history had no entry yet (§1.5: execution_success
// comes before the history is written).
const finishPoll = 100 * time.Millisecond

// Wait implements executor.Executor. It follows the prompt until its
// history entry exists (§1.5 completion rule), then stores its outputs.
// When the server stops answering for DownAfter, forgets the prompt, or
// fails it for want of memory, the job is submitted to a server not tried
// yet, and the new handle is saved; the servers' errors are kept in the
// handle and the output's data.
func (e *Executor) Wait(ctx context.Context, job *executor.Job, h executor.Handle, r executor.Reporter) (*executor.Output, error) {
	first := h
	classes := e.nodeClasses(job)
	pr := &progress{r: r, total: len(classes), classes: classes}
	defer func() {
		// Execute cancels the handle it saw; a prompt this Wait moved to
		// another server is cancelled here when the run ends early.
		if h.ExternalID != first.ExternalID && ctx.Err() != nil && !errors.Is(context.Cause(ctx), task.ErrRunLost) {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.requestTimeout)
			defer cancel()
			_ = e.Cancel(cctx, h)
		}
	}()
	for {
		st, err := decodeState(h)
		if err != nil {
			return nil, err
		}
		entry, err := e.await(ctx, h, st, pr)
		if err == nil {
			err = e.outcome(h, entry)
		}
		if err == nil {
			out, err := e.collect(ctx, job, h, st, entry)
			e.leave(h.ExternalID, batchOf(st))
			if err == nil {
				err = pr.report(ctx, 100, "done")
			}
			return out, err
		}
		// A batch member whose run ended leaves the prompt; Execute's
		// Cancel cancels it only when no member is left.
		e.leave(h.ExternalID, batchOf(st))
		if ctx.Err() != nil || !failsOver(err) || e.wasCancelled(h.ExternalID) {
			return nil, serverError(h.Server, err)
		}
		// A batch member fails over alone, with its own fields.
		st.Batch = nil
		st.Tried = append(st.Tried, h.Server)
		st.Errors = append(st.Errors, ServerError{Server: h.Server, Error: detail(err)})
		noteFailover(ctx, job, h.Server, err)
		if err := pr.stage(ctx, fmt.Sprintf("server %s failed (%s); trying another server", h.Server, detail(err))); err != nil {
			return nil, err
		}
		p, perr := e.prepare(job)
		if perr != nil {
			return nil, perr
		}
		hs, err := e.submit(ctx, newGroup(job), p, st, err)
		if err != nil {
			return nil, err
		}
		h = hs[0]
	}
}

// nodeClasses returns the class_type of each node of job's graph, by node
// id: their count is the progress's whole, their names its stages.
func (e *Executor) nodeClasses(job *executor.Job) map[string]string {
	p, err := e.prepare(job)
	if err != nil {
		return nil
	}
	out := make(map[string]string, len(p.graph))
	for id, n := range p.graph {
		node, _ := n.(map[string]any)
		class, _ := node["class_type"].(string)
		out[id] = class
	}
	return out
}

// await follows the prompt until its history entry exists. The websocket
// brings progress and the end early; /history and /queue are read every
// PollInterval regardless. A server that does not answer for DownAfter is
// provider_unavailable; a prompt in neither queue nor history for
// LostAfter is lost, or cancelled when this process deleted it.
func (e *Executor) await(ctx context.Context, h executor.Handle, st state, pr *progress) (*historyEntry, error) {
	id := h.ExternalID
	t := e.track(id)
	e.mu.Lock()
	t.waiters++
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		t.waiters--
		e.mu.Unlock()
	}()

	wctx, stop := context.WithCancel(ctx)
	events := make(chan event, 64)
	var wg sync.WaitGroup
	if st.Batch == nil || st.Batch.Index == 0 {
		// One socket per clientId (§1.6): the other members of a batch
		// poll.
		wg.Go(func() { e.listen(wctx, h.Server, st.ClientID, id, events, e.pollInterval) })
	}
	defer func() { stop(); wg.Wait() }()

	p := &poller{e: e, c: e.client(h.Server), id: id, server: h.Server}
	finishing := false
	for {
		entry, err := p.check(ctx, pr)
		if entry != nil || err != nil {
			return entry, err
		}
		next := e.pollInterval
		if finishing {
			next = min(next, finishPoll)
		}
		timer := time.NewTimer(next)
	listen:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil, ctx.Err()
			case <-timer.C:
				break listen
			case <-t.kick:
				timer.Stop()
				break listen
			case ev := <-events:
				done, err := pr.event(ctx, ev, id)
				if err != nil {
					timer.Stop()
					return nil, err
				}
				if done && !finishing {
					finishing = true
					timer.Stop()
					break listen
				}
			}
		}
	}
}

// poller reads a prompt's place in a server's history and queue.
type poller struct {
	e      *Executor
	c      *client
	id     string
	server string
	// unreachable and absent are when the server stopped answering and
	// when the prompt was first found nowhere (zero: not so).
	unreachable, absent time.Time
}

// check returns the prompt's history entry once it exists; nil, nil while
// it is queued or running (or briefly unaccounted for).
func (p *poller) check(ctx context.Context, pr *progress) (*historyEntry, error) {
	rctx, cancel := context.WithTimeout(ctx, p.e.requestTimeout)
	defer cancel()
	entry, err := p.c.history(rctx, p.id)
	if err != nil || entry != nil {
		return entry, p.noAnswer(ctx, err)
	}
	running, pending, err := p.c.queued(rctx, p.id)
	if err != nil {
		return nil, p.noAnswer(ctx, err)
	}
	p.unreachable = time.Time{}
	if running || pending {
		p.absent = time.Time{}
		if pending {
			return nil, pr.stage(ctx, "queued on "+p.server)
		}
		return nil, nil
	}
	// It may have finished between the two reads (§1.5 resume step 4).
	if entry, err = p.c.history(rctx, p.id); err != nil || entry != nil {
		return entry, p.noAnswer(ctx, err)
	}
	if p.e.wasCancelled(p.id) {
		return nil, executor.Errorf(executor.Cancelled, "prompt %s was deleted from the queue of %s", p.id, p.server)
	}
	if p.absent.IsZero() {
		p.absent = time.Now()
	}
	if time.Since(p.absent) >= p.e.lostAfter {
		return nil, executor.Errorf(executor.Lost, "prompt %s vanished from %s: in neither its queue nor its history (the server restarted?)", p.id, p.server)
	}
	return nil, nil
}

// noAnswer turns a failed read into nil while the server has failed for
// less than DownAfter, and into provider_unavailable after; a context's
// end and errors that are no outage stay.
func (p *poller) noAnswer(ctx context.Context, err error) error {
	if err == nil {
		p.unreachable = time.Time{}
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !failsOver(err) {
		return err
	}
	if p.unreachable.IsZero() {
		p.unreachable = time.Now()
	}
	if time.Since(p.unreachable) < p.e.downAfter {
		return nil
	}
	return &executor.Error{Category: executor.ProviderUnavailable, Err: fmt.Errorf("server %s has not answered for %s: %w", p.server, p.e.downAfter, unwrapped(err))}
}

// unwrapped is the message-bearing error inside a classified one.
func unwrapped(err error) error {
	if e, ok := err.(*executor.Error); ok {
		return e.Err
	}
	return err
}

// outcome classifies a finished prompt's history entry (§1.3): success;
// interrupted (cancelled when this process cancelled it); an out-of-memory
// execution_error is the server's (provider_error, tried elsewhere); any
// other execution_error is the job's own and permanent (executors.md §5.4):
// invalid_input.
func (e *Executor) outcome(h executor.Handle, entry *historyEntry) error {
	if entry.Status.StatusStr == "success" || (entry.Status.StatusStr == "" && entry.Status.Completed) {
		return nil
	}
	if entry.message("execution_interrupted") != nil {
		if e.wasCancelled(h.ExternalID) {
			return executor.Errorf(executor.Cancelled, "prompt %s was interrupted", h.ExternalID)
		}
		return executor.Errorf(executor.ProviderError, "prompt %s was interrupted on the server, not by us", h.ExternalID)
	}
	var x struct {
		NodeID           string `json:"node_id"`
		NodeType         string `json:"node_type"`
		ExceptionType    string `json:"exception_type"`
		ExceptionMessage string `json:"exception_message"`
	}
	raw := entry.message("execution_error")
	if raw == nil || json.Unmarshal(raw, &x) != nil {
		return executor.Errorf(executor.ProviderError, "prompt %s ended with status %q", h.ExternalID, entry.Status.StatusStr)
	}
	msg := strings.TrimSpace(x.ExceptionMessage)
	if i := strings.IndexByte(msg, '\n'); i > 0 {
		msg = msg[:i]
	}
	err := fmt.Errorf("node %s (%s) raised %s: %s", x.NodeID, x.NodeType, x.ExceptionType, msg)
	if strings.Contains(x.ExceptionType, "OutOfMemory") || strings.Contains(strings.ToLower(msg), "out of memory") {
		return &executor.Error{Category: executor.ProviderError, Err: err}
	}
	return &executor.Error{Category: executor.InvalidInput, Err: err}
}

// collect downloads every output file of the entry with /view (§1.3
// outputs, §1.1 /view) and stores it through job.Put.
func (e *Executor) collect(ctx context.Context, job *executor.Job, h executor.Handle, st state, entry *historyEntry) (*executor.Output, error) {
	c := e.client(h.Server)
	out := &executor.Output{Data: map[string]any{
		DataPromptID: h.ExternalID, DataServerURL: h.Server, DataWorkflow: st.Workflow,
	}, Usage: task.Usage{ProviderSeconds: entry.executionSeconds()}}
	if len(st.Tried) > 0 {
		out.Data[DataRetryServers] = st.Tried
		out.Data[DataServerErrors] = st.Errors
	}
	if len(entry.Prompt) > 2 {
		out.Data[DataWorkflowData] = entry.Prompt[2]
	}
	if b := st.Batch; b != nil {
		out.Data[DataBatchIndex], out.Data[DataBatchSize] = b.Index, b.Size
		// The prompt ran the batch's jobs together: each member gets its
		// share of the execution's seconds, so the members' sum is the
		// prompt's.
		if b.Size > 1 {
			out.Usage.ProviderSeconds /= float64(b.Size)
		}
		if len(b.Seed) > 0 {
			out.Data[DataSeed] = b.Seed
		}
	}
	nodes := make([]string, 0, len(entry.Outputs))
	for id := range entry.Outputs {
		nodes = append(nodes, id)
	}
	sort.Strings(nodes)
	used := map[string]bool{}
	for _, id := range nodes {
		keys := make([]string, 0, len(entry.Outputs[id]))
		for k := range entry.Outputs[id] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			var files []fileRef
			if json.Unmarshal(entry.Outputs[id][k], &files) != nil {
				continue // text and other non-file outputs
			}
			if b := st.Batch; b != nil && len(files) == b.Size && b.Index < len(files) {
				// A list of the batch's images, in batch order: the
				// member's is its own.
				files = files[b.Index : b.Index+1]
			}
			for _, f := range files {
				if f.Filename == "" {
					continue
				}
				art, err := e.store(ctx, job, c, f, id, used)
				if err != nil {
					return nil, serverError(h.Server, err)
				}
				out.Artifacts = append(out.Artifacts, art)
			}
		}
	}
	return out, nil
}

// store downloads one output file and puts it among the task's artifacts,
// named after the file (prefixed with its node when the name is taken).
func (e *Executor) store(ctx context.Context, job *executor.Job, c *client, f fileRef, node string, used map[string]bool) (task.Artifact, error) {
	data, ctype, err := c.view(ctx, f)
	if err != nil {
		return task.Artifact{}, err
	}
	name := path.Base(f.Filename)
	if used[name] {
		name = node + "-" + name
	}
	used[name] = true
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		ctype = t
	}
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	art, err := job.Put(ctx, name, ctype, data)
	if err != nil {
		return task.Artifact{}, fmt.Errorf("storing output %s: %w", name, err)
	}
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(data)); err == nil {
		art.Width, art.Height = cfg.Width, cfg.Height
	}
	return art, nil
}

// progress turns websocket frames into the job's progress: the share of
// the graph's nodes done (cached ones included) plus the running node's
// steps, up to 95 % until the outputs are stored. Reports never go back.
type progress struct {
	r       executor.Reporter
	total   int
	done    int
	current string
	// classes are the nodes' class_types by id, for the stage's name.
	classes map[string]string
	frac    float64
	last    float64
	stageAt string
}

// report passes pct (never below the last) and stage on.
func (p *progress) report(ctx context.Context, pct float64, stage string) error {
	pct = max(pct, p.last)
	if pct == p.last && stage == p.stageAt {
		return nil
	}
	p.last, p.stageAt = pct, stage
	return p.r.Progress(ctx, pct, stage)
}

// stage reports a new stage at the current progress.
func (p *progress) stage(ctx context.Context, stage string) error {
	if stage == p.stageAt {
		return nil
	}
	return p.report(ctx, p.last, stage)
}

// event applies a websocket frame (§1.6); done says the frame ends the
// prompt (execution_success/error/interrupted, or executing{node:null}).
func (p *progress) event(ctx context.Context, ev event, id string) (done bool, err error) {
	d := ev.Data
	switch ev.Type {
	case "execution_start":
		return false, p.stage(ctx, "running")
	case "execution_cached":
		p.done += len(d.Nodes)
	case "executing":
		if d.Node == nil {
			return d.PromptID == id, nil
		}
		if *d.Node == p.current {
			return false, nil
		}
		if p.current != "" {
			p.done++
		}
		p.current, p.frac = *d.Node, 0
	case "progress":
		if d.Max > 0 {
			p.frac = min(d.Value/d.Max, 1)
		}
	case "execution_success", "execution_error", "execution_interrupted":
		return d.PromptID == id, nil
	default:
		return false, nil
	}
	pct := 0.0
	if p.total > 0 {
		pct = min(95, 95*(float64(p.done)+p.frac)/float64(p.total))
	}
	stage := "running"
	if p.current != "" {
		stage = "running node " + p.current
		if c := p.classes[p.current]; c != "" {
			stage = "running " + c + " (node " + p.current + ")"
		}
	}
	return false, p.report(ctx, pct, stage)
}
