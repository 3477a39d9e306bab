package comfyui

import "github.com/computeserver/compute/internal/executor"

var _ executor.ServerReporter = (*Executor)(nil)

// ServerStates implements executor.ServerReporter from the pool's health:
// what this process's last call to each server found.
func (e *Executor) ServerStates() []executor.ServerState {
	e.healthMu.Lock()
	defer e.healthMu.Unlock()
	out := make([]executor.ServerState, len(e.servers))
	for i, s := range e.servers {
		h := e.health[s.URL]
		out[i] = executor.ServerState{URL: s.URL, Slots: s.Slots, Down: h.down, CheckedAt: h.at}
		if h.err != nil {
			out[i].LastError = h.err.Error()
		}
	}
	return out
}
