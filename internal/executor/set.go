package executor

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/computeserver/compute/internal/task"
)

// Route is a task type's executor choice from the config file's `types:`.
type Route struct {
	// Executor runs the type's tasks that name no provider_type.
	Executor string
	// Fallback lists executors that take over, in order, when Executor
	// fails with ProviderUnavailable or StartTimeout (not when the client
	// named the executor).
	Fallback []string
}

// Set is the configured executors of a process, by name, with each one's
// type (comfyui, mock, …) and the per-type routes. Build it at start-up,
// then share it read-only.
type Set struct {
	byName map[string]Executor
	kinds  map[string]string
	names  []string
	routes map[string]Route
	limits map[string]Limits
	gate   Gate
	// batches gathers the jobs of executors that batch.
	batches *collector
}

// NewSet returns an empty set, whose start rates and pauses are kept in
// this process until UseGate.
func NewSet() *Set {
	return &Set{byName: map[string]Executor{}, kinds: map[string]string{}, routes: map[string]Route{},
		limits: map[string]Limits{}, gate: NewLocalGate(), batches: newCollector()}
}

// UseGate makes g keep the set's start rates and pauses (the task store,
// shared by every process). Call it at start-up, before the set is shared.
func (s *Set) UseGate(g Gate) { s.gate = g }

// SetLimits sets the limits of the executor named name, which must have
// been added. Without a concurrency, an executor with a Capacity gets that,
// times its batches' max_size when it batches. Batching an executor that
// is no Batcher is an error.
func (s *Set) SetLimits(name string, l Limits) error {
	ex, ok := s.byName[name]
	if !ok {
		return fmt.Errorf("executor %q is not configured", name)
	}
	if l.Concurrency < 0 || l.StartsPerMinute < 0 {
		return fmt.Errorf("executor %q: concurrency and starts_per_minute must not be negative", name)
	}
	if err := l.Batch.Validate(); err != nil {
		return fmt.Errorf("executor %q: %w", name, err)
	}
	if _, ok := ex.(Batcher); !ok && l.Batch.MaxSize > 1 {
		return fmt.Errorf("executor %q: batch: executors of type %s cannot batch", name, s.kinds[name])
	}
	if c, ok := ex.(Capacity); ok && l.Concurrency == 0 {
		// A batch holds one of the executor's own slots for up to
		// max_size tasks: claim that many per slot, or batches never
		// fill.
		l.Concurrency = c.Capacity() * max(l.Batch.MaxSize, 1)
	}
	s.limits[name] = l
	return nil
}

// Closer is implemented by executors holding processes or connections to
// end when the process stops (a command executor's process groups and
// server).
type Closer interface {
	Close()
}

// Close closes every executor of the set that is a Closer, once the runs
// are over (at shutdown, after the engine stopped).
func (s *Set) Close() {
	for _, n := range s.names {
		if c, ok := s.byName[n].(Closer); ok {
			c.Close()
		}
	}
}

// LimitsOf returns the limits of the executor named name.
func (s *Set) LimitsOf(name string) Limits { return s.limits[name] }

// Concurrency returns the executors with a concurrency limit and their
// limits: what a claim passes the store (store.ClaimParams.ExecutorLimits).
func (s *Set) Concurrency() map[string]int {
	out := map[string]int{}
	for n, l := range s.limits {
		if l.Concurrency > 0 {
			out[n] = l.Concurrency
		}
	}
	return out
}

// Add registers ex, of executor type kind, under ex.Name(). A duplicate
// name is an error.
func (s *Set) Add(kind string, ex Executor) error {
	name := ex.Name()
	if name == "" {
		return fmt.Errorf("adding a %s executor: it has no name", kind)
	}
	if _, dup := s.byName[name]; dup {
		return fmt.Errorf("adding executor %q: already configured", name)
	}
	s.byName[name], s.kinds[name] = ex, kind
	if c, ok := ex.(Capacity); ok {
		s.limits[name] = Limits{Concurrency: c.Capacity()}
	}
	s.names = append(s.names, name)
	sort.Strings(s.names)
	return nil
}

// Route sets the route of task type typeName. Every executor it names
// must have been added.
func (s *Set) Route(typeName string, r Route) error {
	for _, n := range append([]string{r.Executor}, r.Fallback...) {
		if _, ok := s.byName[n]; !ok {
			return fmt.Errorf("executor %q is not configured (configured: %s)", n, s.list(s.names))
		}
	}
	s.routes[typeName] = r
	return nil
}

// Lookup returns the executor named name.
func (s *Set) Lookup(name string) (Executor, bool) {
	ex, ok := s.byName[name]
	return ex, ok
}

// For returns the executor a claimed task's provider_type names. One this
// process has not configured is a permanent error naming the configured
// ones: processes of one deployment must share the executors section.
func (s *Set) For(name string) (Executor, error) {
	if ex, ok := s.byName[name]; ok {
		return ex, nil
	}
	return nil, task.Permanent(fmt.Errorf("executor %q is not configured in this process (configured: %s)", name, s.list(s.names)))
}

// Kind returns the executor type of the executor named name.
func (s *Set) Kind(name string) string { return s.kinds[name] }

// Names returns the configured executor names, sorted.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// Usable returns, sorted, the configured executors whose type is one of
// kinds: the ones a task type that runs on those kinds may name.
func (s *Set) Usable(kinds []string) []string {
	var out []string
	for _, n := range s.names {
		if slices.Contains(kinds, s.kinds[n]) {
			out = append(out, n)
		}
	}
	return out
}

// UnusableError is a provider_type that names no executor the task's type
// can use.
type UnusableError struct {
	// Type is the task type; Requested the provider_type asked for.
	Type, Requested string
	// Usable are the configured executors the type can use.
	Usable []string
	// Kinds are the executor types the task type runs on: what to
	// configure when none is.
	Kinds []string
}

// Error implements error. With no usable executor it says which executor
// types to configure (the mock last: it only stands in for tests).
func (e *UnusableError) Error() string {
	if len(e.Usable) == 0 {
		msg := fmt.Sprintf("no configured executor can run %s tasks", e.Type)
		var want []string
		for _, k := range e.Kinds {
			if k != "mock" {
				want = append(want, k)
			}
		}
		if len(want) > 0 {
			msg += fmt.Sprintf(": configure an executor of type %s (docs/executors.md)", orList(want))
		}
		return msg
	}
	if e.Requested == "" {
		return fmt.Sprintf("no default executor for %s tasks; name one of: %s", e.Type, strings.Join(e.Usable, ", "))
	}
	return fmt.Sprintf("executor %q is not configured for %s tasks; configured: %s", e.Requested, e.Type, strings.Join(e.Usable, ", "))
}

// orList joins words as "a", "a or b", "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// StandIn refuses a new task of type typeName that would run on name, a
// mock executor, when nothing chose the mock: not the client (requested),
// not the type's route. Task types whose mock only stands in for tests (a
// chat, an image edit) call it at create, so that a server without a real
// executor for them answers what to configure (an *UnusableError listing
// the type's other kinds) instead of running the task on the mock. kinds
// are the executor types the task type runs on.
func (s *Set) StandIn(typeName string, kinds []string, name string, requested bool) error {
	if requested || s.kinds[name] != "mock" {
		return nil
	}
	if r, ok := s.routes[typeName]; ok && r.Executor == name {
		return nil
	}
	var real []string
	for _, n := range s.Usable(kinds) {
		if s.kinds[n] != "mock" {
			real = append(real, n)
		}
	}
	return &UnusableError{Type: typeName, Usable: real, Kinds: kinds}
}

// Resolve returns the executor a new task of type typeName runs on: the one
// it requested, else the type's route, else fallback (the type's declared
// default) when configured, else the only usable one. kinds are the
// executor types the task type can use. A requested name that is not a
// usable executor is an *UnusableError.
func (s *Set) Resolve(typeName string, kinds []string, fallback, requested string) (string, error) {
	usable := s.Usable(kinds)
	if requested != "" {
		if !slices.Contains(usable, requested) {
			return "", &UnusableError{Type: typeName, Requested: requested, Usable: usable, Kinds: kinds}
		}
		return requested, nil
	}
	if r, ok := s.routes[typeName]; ok && slices.Contains(usable, r.Executor) {
		return r.Executor, nil
	}
	if slices.Contains(usable, fallback) {
		return fallback, nil
	}
	if len(usable) == 1 {
		return usable[0], nil
	}
	return "", &UnusableError{Type: typeName, Usable: usable, Kinds: kinds}
}

func (s *Set) list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
