package comfyfake

import (
	"errors"
	"fmt"
	"time"
)

// errInterrupted and errKilled end an execution early: an interrupt
// (execution_interrupted) or a Kill (nothing more is sent).
var (
	errInterrupted = errors.New("interrupted")
	errKilled      = errors.New("killed")
)

// execution is one run of PromptExecutor.execute_async plus the end of
// prompt_worker (§1.5): the message order below is the recorded exchange's.
type execution struct {
	s      *Server
	gen    int
	rp     *runningPrompt
	item   *queueItem
	client *string
	done   <-chan struct{}

	sigs     map[string]string
	cached   []string
	progress map[string]*nodeProgress
	executed []string
	messages [][]any
	success  bool
}

// nodeProgress is one node of the progress registry
// (comfy_execution/progress.py), sent in progress_state.
type nodeProgress struct {
	value, max pyFloat
	state      string
}

// lock takes s.mu for this execution, or fails when the server was killed
// since it began (a dead process sends nothing).
func (x *execution) lock() error {
	x.s.mu.Lock()
	if x.s.gen != x.gen || x.s.st == nil {
		x.s.mu.Unlock()
		return errKilled
	}
	return nil
}

func (x *execution) unlock() { x.s.mu.Unlock() }

// addMessage is PromptExecutor.add_message: stamped, kept for the history's
// status.messages, sent to the client (or to everyone when broadcast, even
// with no client). s.mu must be held.
func (x *execution) addMessage(event string, data map[string]any, broadcast bool) {
	data["timestamp"] = time.Now().UnixMilli()
	x.messages = append(x.messages, []any{event, data})
	if x.client != nil || broadcast {
		x.s.sendLocked(event, data, x.client)
	}
}

// toClient sends a message only when the prompt has a client
// (execution.py guards executing/executed with server.client_id, §1.6).
func (x *execution) toClient(event string, data map[string]any) {
	if x.client != nil {
		x.s.sendLocked(event, data, x.client)
	}
}

// sendProgressState is WebUIProgressHandler._send_progress_state: every
// node that is not pending, to the client or broadcast (§1.6).
func (x *execution) sendProgressState() {
	nodes := map[string]any{}
	for id, p := range x.progress {
		nodes[id] = map[string]any{"value": p.value, "max": p.max, "state": p.state, "node_id": id, "prompt_id": x.item.id,
			"display_node_id": id, "parent_node_id": nil, "real_node_id": id}
	}
	x.s.sendLocked("progress_state", map[string]any{"prompt_id": x.item.id, "nodes": nodes}, x.client)
}

func (x *execution) setProgress(id string, value, max pyFloat, state string) {
	x.progress[id] = &nodeProgress{value: value, max: max, state: state}
	x.sendProgressState()
}

// hold waits for Server.Resume when the server is paused (resume not nil).
func (x *execution) hold(resume chan struct{}) error {
	if resume == nil {
		return nil
	}
	select {
	case <-x.done:
		return errKilled
	case <-x.rp.interrupt:
		return errInterrupted
	case <-resume:
		return nil
	}
}

// pause waits d, returning early on an interrupt or a Kill.
func (x *execution) pause(d time.Duration) error {
	select {
	case <-x.done:
		return errKilled
	case <-x.rp.interrupt:
		return errInterrupted
	default:
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-x.done:
		return errKilled
	case <-x.rp.interrupt:
		return errInterrupted
	case <-t.C:
		return nil
	}
}

// run executes the prompt and writes its history (§1.5 order: status,
// execution_start, execution_cached, per node progress_state/executing/…,
// execution_success|error|interrupted, history, status, executing null).
func (x *execution) run() {
	defer func() {
		x.s.mu.Lock()
		x.s.executing--
		x.s.mu.Unlock()
	}()
	if err := x.lock(); err != nil {
		return
	}
	st := x.s.st
	x.progress = map[string]*nodeProgress{}
	x.addMessage("execution_start", map[string]any{"prompt_id": x.item.id}, false)
	// The classic cache keeps only the nodes of the new prompt
	// (cache.clean_unused); nodes whose signature is kept are cached.
	x.sigs = x.s.signatures(x.item.graph)
	keep := map[string]bool{}
	for _, sig := range x.sigs {
		keep[sig] = true
	}
	for sig := range st.cache {
		if !keep[sig] {
			delete(st.cache, sig)
		}
	}
	x.cached = []string{}
	for _, id := range x.item.graph.order {
		if st.cache[x.sigs[id]] != nil {
			x.cached = append(x.cached, id)
		}
	}
	x.addMessage("execution_cached", map[string]any{"nodes": x.cached, "prompt_id": x.item.id}, false)
	x.unlock()

	x.success = true
	var failure error
	for _, id := range x.plan() {
		if err := x.node(id); err != nil {
			failure = err
			break
		}
	}
	if errors.Is(failure, errKilled) {
		return
	}
	if err := x.lock(); err != nil {
		return
	}
	defer x.unlock()
	if failure == nil {
		x.addMessage("execution_success", map[string]any{"prompt_id": x.item.id}, false)
	} else {
		x.success = false
	}
	x.finishLocked()
}

// finishLocked is the end of execute_async and prompt_worker: history (the
// UI outputs of the prompt's nodes, cached ones included), status
// broadcast, then executing{node:null} to the client (§1.3, §1.5).
func (x *execution) finishLocked() {
	s, st := x.s, x.s.st
	st.lastNode = nil
	outputs, meta := map[string]uiOutput{}, map[string]any{}
	for _, id := range x.item.graph.order {
		if c := st.cache[x.sigs[id]]; c != nil && c.ui != nil {
			outputs[id] = c.ui
			meta[id] = map[string]any{"node_id": id, "display_node": id, "parent_node": nil, "real_node_id": id}
		}
	}
	// task_done strips the Comfy.org credentials from extra_data (§1.3).
	stored := *x.item
	stored.extra = map[string]any{}
	for k, v := range x.item.extra {
		if k != "auth_token_comfy_org" && k != "api_key_comfy_org" {
			stored.extra[k] = v
		}
	}
	entry := &historyEntry{id: x.item.id, item: &stored, outputs: outputs, meta: meta, success: x.success, messages: x.messages,
		visibleAt: time.Now().Add(s.faults.HistoryDelay)}
	s.writeHistoryLocked(entry)
	st.running = nil
	s.stats.Finished = append(s.stats.Finished, x.item.id)
	s.sendStatusLocked()
	x.toClient("executing", map[string]any{"node": nil, "prompt_id": x.item.id})
	s.notifyLocked()
}

// plan is the execution list: each output node after the nodes it needs,
// leaving out (and not descending into) cached inputs, as ExecutionList
// does; a cached output node stays, to re-send its UI (§1.7 caching).
func (x *execution) plan() []string {
	g := x.item.graph
	var order []string
	seen := map[string]bool{}
	isCached := map[string]bool{}
	for _, id := range x.cached {
		isCached[id] = true
	}
	var visit func(id string)
	visit = func(id string) {
		if seen[id] {
			return
		}
		seen[id] = true
		if !isCached[id] {
			for _, spec := range x.s.catalog[g.nodes[id].classType].inputs {
				if link, ok := g.nodes[id].inputs[spec.name].([]any); ok && len(link) == 2 {
					if from := pyStr(link[0]); !isCached[from] {
						visit(from)
					}
				}
			}
		}
		order = append(order, id)
	}
	for _, id := range x.item.outputs {
		visit(id)
	}
	return order
}

// node is execution.py execute for one node.
func (x *execution) node(id string) error {
	s := x.s
	n := x.item.graph.nodes[id]
	class := s.catalog[n.classType]
	if err := x.lock(); err != nil {
		return err
	}
	if c := s.st.cache[x.sigs[id]]; c != nil {
		var out any
		if c.ui != nil {
			out = c.ui
		}
		x.toClient("executed", map[string]any{"node": id, "display_node": id, "output": out, "prompt_id": x.item.id})
		x.setProgress(id, 1, 1, "finished")
		x.unlock()
		return nil
	}
	x.setProgress(id, 0, 1, "running")
	if x.client != nil {
		last := id
		s.st.lastNode = &last
	}
	x.toClient("executing", map[string]any{"node": id, "display_node": id, "prompt_id": x.item.id})
	faults, resume := s.faults, s.resume
	x.unlock()

	err := x.hold(resume)
	var args map[string]any
	if err == nil {
		args, err = x.inputs(id)
	}
	if err == nil {
		err = x.pause(s.opts.NodeDelay)
	}
	if err == nil && s.opts.Steps > 0 && (s.opts.StepClass == "" || s.opts.StepClass == n.classType) {
		err = x.steps(id)
	}
	var outputs []value
	var ui uiOutput
	if err == nil && faults.FailClass == n.classType {
		err = injected(n.classType, faults.FailOOM)
	}
	if err == nil {
		rc := &runContext{s: s, promptID: x.item.id, maxPixels: s.opts.MaxPixels}
		outputs, ui, err = class.run(rc, args)
	}
	if errors.Is(err, errKilled) {
		return err
	}
	if err := x.lock(); err != nil {
		return err
	}
	defer x.unlock()
	if err != nil {
		x.fail(id, class, args, err)
		return err
	}
	s.st.cache[x.sigs[id]] = &cacheEntry{outputs: outputs, ui: ui}
	if ui != nil {
		x.toClient("executed", map[string]any{"node": id, "display_node": id, "output": ui, "prompt_id": x.item.id})
	}
	x.setProgress(id, 1, 1, "finished")
	x.executed = append(x.executed, id)
	return nil
}

// steps reports progress like a sampler through main.py's hook: the
// interrupt check, progress_state, then progress {value,max} (§1.6).
func (x *execution) steps(id string) error {
	for i := 1; i <= x.s.opts.Steps; i++ {
		if err := x.pause(x.s.opts.StepDelay); err != nil {
			return err
		}
		if err := x.lock(); err != nil {
			return err
		}
		x.setProgress(id, pyFloat(i), pyFloat(x.s.opts.Steps), "running")
		x.s.sendLocked("progress", map[string]any{"value": i, "max": x.s.opts.Steps, "prompt_id": x.item.id, "node": id}, x.client)
		x.unlock()
	}
	return nil
}

// inputs gathers a node's arguments: converted literals and the outputs of
// linked nodes from the cache.
func (x *execution) inputs(id string) (map[string]any, error) {
	if err := x.lock(); err != nil {
		return nil, err
	}
	defer x.unlock()
	n := x.item.graph.nodes[id]
	args := map[string]any{}
	for _, spec := range x.s.catalog[n.classType].inputs {
		val := n.inputs[spec.name]
		if link, ok := val.([]any); ok && len(link) == 2 {
			from, slot := pyStr(link[0]), int(toFloat(link[1]))
			c := x.s.st.cache[x.sigs[from]]
			if c == nil || slot >= len(c.outputs) {
				return nil, &exception{typ: "KeyError", message: fmt.Sprintf("'%s'", from)}
			}
			args[spec.name] = c.outputs[slot]
			continue
		}
		if f, ok := val.(pyFloat); ok {
			val = float64(f)
		}
		args[spec.name] = val
	}
	return args, nil
}

// injected is the exception of Faults.FailClass.
func injected(class string, oom bool) error {
	if oom {
		return &exception{typ: "torch.OutOfMemoryError", oom: true,
			message: "Allocation on device 0 would exceed allowed memory. (out of memory)"}
	}
	return &exception{typ: "RuntimeError", message: "comfyfake: injected failure in " + class}
}

// fail is PromptExecutor.handle_execution_error: execution_interrupted
// (broadcast) or execution_error (client only), §1.6. s.mu must be held.
func (x *execution) fail(id string, class *nodeClass, args map[string]any, err error) {
	executed := append([]string{}, x.executed...)
	if errors.Is(err, errInterrupted) {
		x.addMessage("execution_interrupted", map[string]any{"prompt_id": x.item.id, "node_id": id, "node_type": class.name,
			"executed": executed}, true)
		return
	}
	var ex *exception
	if !errors.As(err, &ex) {
		ex = &exception{typ: "Exception", message: err.Error()}
	}
	message := ex.message + "\n"
	if ex.oom {
		message += oomTips
	}
	current := map[string]any{}
	for name, v := range args {
		switch v := v.(type) {
		case value:
			current[name] = []any{fmt.Sprintf("torch.Tensor(batch=%d)", len(v.images))}
		default:
			current[name] = []any{v}
		}
	}
	x.addMessage("execution_error", map[string]any{
		"prompt_id": x.item.id, "node_id": id, "node_type": class.name, "executed": executed,
		"exception_message": message, "exception_type": ex.typ,
		"traceback": []string{
			fmt.Sprintf("  File \"comfyfake\", in %s\n    raise %s (injected by the fake)\n", class.name, ex.typ),
		},
		"current_inputs": current, "current_outputs": append([]string{}, x.cached...),
	}, false)
}
