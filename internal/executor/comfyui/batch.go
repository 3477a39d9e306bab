package comfyui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
)

// Batching (executor.Batcher): jobs whose templates take "{{batch_size}}"
// and whose filled graphs differ in their seed at most run as one prompt
// with batch_size N, filled from the first job's fields (so with its
// seed). Every member's handle names the prompt and its place in the
// batch; its Wait stores only its own image (the i-th file of each output
// list of N files). Cancelling a member stops its wait; the prompt is
// interrupted or deleted only when every member this process follows was
// cancelled.

var _ executor.Batcher = (*Executor)(nil)

// Result data keys of a batch member's Output.Data.
const (
	// DataBatchIndex is the member's place in the batch, from 0.
	DataBatchIndex = "batch_index"
	// DataBatchSize is the number of images the prompt made.
	DataBatchSize = "batch_size"
	// DataSeed is the seed field the prompt was filled with (the first
	// member's), as JSON.
	DataSeed = "seed"
)

// fieldSeed is the field held constant when jobs are compared for a
// batch: jobs that differ only in it share a prompt.
const fieldSeed = "seed"

// batchState is a member's place in its batch (state.Batch).
type batchState struct {
	Index int `json:"index"`
	Size  int `json:"size"`
	// Seed is the seed field the prompt was filled with, as JSON.
	Seed json.RawMessage `json:"seed,omitempty"`
}

// BatchKey implements executor.Batcher: a hash of the job's type, its
// template and the graph filled from its fields with the seed held
// constant and its inputs by URL. A template without "{{batch_size}}", or
// fields it cannot be filled with, cannot batch.
func (e *Executor) BatchKey(job *executor.Job) (string, bool) {
	var fields map[string]json.RawMessage
	if len(job.Fields) == 0 || json.Unmarshal(job.Fields, &fields) != nil {
		return "", false
	}
	t, err := e.templateFor(job.Type, fields[fieldWorkflowName])
	if err != nil || !t.batchable() {
		return "", false
	}
	if _, ok := fields[fieldSeed]; ok {
		fields[fieldSeed] = json.RawMessage("0")
	}
	graph, urls, err := t.fill(fields)
	if err != nil {
		return "", false
	}
	names := make(map[string]string, len(urls))
	for f, u := range urls {
		names[f] = "input:" + u
	}
	raw, err := json.Marshal(struct {
		Type     string         `json:"type"`
		Workflow string         `json:"workflow"`
		Graph    map[string]any `json:"graph"`
	}{job.Type, t.name, resolve(graph, names)})
	if err != nil {
		return "", false
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), true
}

// StartBatch implements executor.Batcher: one prompt of batch_size
// len(jobs), filled from jobs[0], with each job's handle saved before it
// is submitted. A job whose handle cannot be saved (its task was cancelled
// meanwhile) is left out of the prompt, with its error in the
// *executor.BatchError.
func (e *Executor) StartBatch(ctx context.Context, jobs []*executor.Job) ([]executor.Handle, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	p, err := e.prepare(jobs[0])
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(jobs[0].Fields, &fields) // prepare read them
	g := &group{jobs: jobs, errs: make([]error, len(jobs)), batch: true, seed: fields[fieldSeed]}
	hs, err := e.submit(ctx, g, p, state{ClientID: uuid.NewString(), Workflow: p.workflow}, nil)
	if err != nil {
		return nil, err
	}
	for _, err := range g.errs {
		if err != nil {
			return hs, &executor.BatchError{Errs: g.errs}
		}
	}
	return hs, nil
}

// group is the jobs of one prompt: one job, or a batch's members.
type group struct {
	jobs []*executor.Job
	// errs are the members left out (their handle could not be saved).
	errs  []error
	batch bool
	seed  json.RawMessage
	// index and size are the members' places once saved: resaving a
	// prompt already sent keeps them.
	index map[int]int
	size  int
	sent  bool
}

// newGroup is the group of a single job.
func newGroup(job *executor.Job) *group {
	return &group{jobs: []*executor.Job{job}, errs: make([]error, 1)}
}

// live returns the indexes of the jobs not left out.
func (g *group) live() []int {
	var out []int
	for i, err := range g.errs {
		if err == nil {
			out = append(out, i)
		}
	}
	return out
}

// save saves the handle of each job of the prompt h names: a batch's
// members with their place in it. A member whose save fails is left out
// and the others are saved again with their new places, until every
// remaining save succeeded; the error is a single job's, or a batch's when
// no member is left.
func (g *group) save(ctx context.Context, h executor.Handle, st state) ([]executor.Handle, error) {
	for {
		live := g.live()
		if len(live) == 0 {
			return nil, fmt.Errorf("no job of the batch is left: %w", g.errs[0])
		}
		if !g.sent {
			g.index, g.size = map[int]int{}, len(live)
			for k, i := range live {
				g.index[i] = k
			}
		}
		hs := make([]executor.Handle, len(g.jobs))
		again := false
		for _, i := range live {
			s := st
			if g.batch {
				s.Batch = &batchState{Index: g.index[i], Size: g.size, Seed: g.seed}
			}
			mh := h
			var err error
			if mh.State, err = json.Marshal(s); err != nil {
				return nil, fmt.Errorf("encoding handle state: %w", err)
			}
			if err := g.jobs[i].SaveHandle(ctx, mh); err != nil {
				if !g.batch || ctx.Err() != nil {
					return nil, err
				}
				g.errs[i] = err
				if g.sent {
					continue // the prompt's batch is fixed: the others keep their places
				}
				again = true
				break
			}
			hs[i] = mh
		}
		if len(g.live()) == 0 {
			return nil, fmt.Errorf("no job of the batch is left: %w", g.errs[0])
		}
		if !again {
			return hs, nil
		}
	}
}

// memberIndexes are the batch indexes of g's members in its prompt (none
// for a single job).
func memberIndexes(g *group) []int {
	if !g.batch {
		return nil
	}
	out := make([]int, 0, len(g.index))
	for _, i := range g.live() {
		out = append(out, g.index[i])
	}
	return out
}

// leave records that this process no longer follows member idx of prompt
// id (its wait ended, or it was cancelled) and reports whether no member
// is left; then the prompt's slot is given back. A prompt that is not a
// batch (idx < 0), or that this process does not track, has none left.
func (e *Executor) leave(id string, idx int) (last bool) {
	e.mu.Lock()
	t, ok := e.tracked[id]
	if ok && idx >= 0 {
		delete(t.live, idx)
		last = len(t.live) == 0
	} else {
		last = true
	}
	e.mu.Unlock()
	if last {
		e.untrack(id)
	}
	return last
}

// claimSlot reports whether a recovering run must take a slot for prompt
// id: not when this process holds one for it already (another member of
// its batch took it), or is taking one.
func (e *Executor) claimSlot(id string) bool {
	t := e.track(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	if t.release != nil || t.acquiring {
		return false
	}
	t.acquiring = true
	return true
}

// abandonSlot records that a recovering run could not take prompt id's
// slot (claimSlot said it must): only that run's part is undone. The
// other members this process recovered meanwhile stay followed; the
// prompt is forgotten only when none is and no Wait follows it.
func (e *Executor) abandonSlot(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tracked[id]
	if !ok {
		return
	}
	t.acquiring = false
	if t.release == nil && len(t.live) == 0 && t.waiters == 0 {
		delete(e.tracked, id)
	}
}

// addMembers adds members idx (of a batch) to the members of prompt id
// this process follows.
func (e *Executor) addMembers(id string, idx []int) {
	t := e.track(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, i := range idx {
		t.live[i] = true
	}
}

// batchOf returns the batch index of a handle's state, -1 for a prompt of
// one job.
func batchOf(st state) int {
	if st.Batch == nil {
		return -1
	}
	return st.Batch.Index
}
