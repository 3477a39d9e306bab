// Package executors is the single list of the built-in executor types and
// the place a process's configured executors are built from the config
// file's `executors:` and `types:` sections. Adding an executor type is one
// package under internal/executor and one entry in builtins.
package executors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/cog"
	"github.com/computeserver/compute/internal/executor/comfyui"
	"github.com/computeserver/compute/internal/executor/command"
	"github.com/computeserver/compute/internal/executor/fal"
	"github.com/computeserver/compute/internal/executor/gemini"
	"github.com/computeserver/compute/internal/executor/local"
	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/executor/openai"
	"github.com/computeserver/compute/internal/executor/replicate"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/telemetry"
)

// Entry is one configured executor: the config file's
// `executors: {NAME: {type: KIND, …settings}}`.
type Entry struct {
	// Type is the executor type (KIND).
	Type string
	// Settings are the type-specific settings as JSON, decoded strictly
	// (an unknown key is an error) by the type's factory.
	Settings json.RawMessage
	// Where locates the entry for error messages ("line 4").
	Where string
	// Dir is the config file's directory: relative paths in Settings
	// (a workflows directory, a command) are relative to it.
	Dir string
}

// Deps are what executors take from the process rather than from their
// settings.
type Deps struct {
	// HTTP makes the hosted executors' calls (nil: a client of their own
	// with a five-minute timeout per call).
	HTTP *http.Client
	// PublicURL is the server's public base URL: where a Cog container
	// sends its webhooks unless its callback_url says otherwise.
	PublicURL string
	// Callbacks receives Cog containers' webhooks; the process's API
	// serves it at cog.CallbackPath. Nil: cog executors cannot be built.
	Callbacks *cog.Callbacks
	// Slots, when set, keeps the slots of executors with bounded servers
	// (comfyui) where every worker process sees them (the task store);
	// nil counts them in this process only.
	Slots store.Slots
	// DataDir is the process's data directory: command executors keep
	// their state (work directories, checkpoints, the record of started
	// process groups) under it unless their state_dir says otherwise.
	DataDir string
	// Logger receives the executors' logs (nil: discarded).
	Logger *slog.Logger
}

// factory builds an executor of one type named name from its settings;
// decode decodes the settings strictly into a settings struct, env holds
// what the process shares with its executors.
type factory func(name string, decode func(v any) error, env env) (executor.Executor, error)

// env is what a factory gets besides the settings.
type env struct {
	Deps
	// dir is the config file's directory (relative paths start there).
	dir string
	// comfySlots is the ComfyUI slot accounting of the process, shared by
	// its comfyui executors.
	comfySlots comfyui.Slots
}

// settingsOf decodes an executor's settings into a new S.
func settingsOf[S any](decode func(v any) error) (S, error) {
	var s S
	err := decode(&s)
	return s, err
}

// builtins returns the executor types this build can run: the central
// list, one entry per type.
func builtins() map[string]factory {
	return map[string]factory{
		comfyui.Kind: func(name string, decode func(v any) error, e env) (executor.Executor, error) {
			s, err := settingsOf[comfyui.Settings](decode)
			if err != nil {
				return nil, err
			}
			return comfyui.New(name, s, comfyui.Options{Dir: e.dir, Slots: e.comfySlots})
		},
		mock.Kind: func(name string, decode func(v any) error, _ env) (executor.Executor, error) {
			s, err := settingsOf[mock.Settings](decode)
			if err != nil {
				return nil, err
			}
			return mock.New(name, s, nil)
		},
		local.Kind: func(name string, decode func(v any) error, _ env) (executor.Executor, error) {
			s, err := settingsOf[local.Settings](decode)
			if err != nil {
				return nil, err
			}
			return local.New(name, s, nil)
		},
		fal.Kind: func(name string, decode func(v any) error, d env) (executor.Executor, error) {
			s, err := settingsOf[fal.Settings](decode)
			if err != nil {
				return nil, err
			}
			return fal.New(name, s, d.HTTP)
		},
		replicate.Kind: func(name string, decode func(v any) error, d env) (executor.Executor, error) {
			s, err := settingsOf[replicate.Settings](decode)
			if err != nil {
				return nil, err
			}
			return replicate.New(name, s, d.HTTP)
		},
		command.Kind: func(name string, decode func(v any) error, d env) (executor.Executor, error) {
			s, err := settingsOf[command.Settings](decode)
			if err != nil {
				return nil, err
			}
			return command.New(name, s, command.Options{Dir: d.dir, DataDir: d.DataDir, Logger: d.Logger})
		},
		openai.Kind: func(name string, decode func(v any) error, d env) (executor.Executor, error) {
			s, err := settingsOf[openai.Settings](decode)
			if err != nil {
				return nil, err
			}
			return openai.New(name, s, d.HTTP)
		},
		gemini.Kind: func(name string, decode func(v any) error, d env) (executor.Executor, error) {
			s, err := settingsOf[gemini.Settings](decode)
			if err != nil {
				return nil, err
			}
			return gemini.New(name, s, d.HTTP)
		},
		cog.Kind: func(name string, decode func(v any) error, d env) (executor.Executor, error) {
			s, err := settingsOf[cog.Settings](decode)
			if err != nil {
				return nil, err
			}
			return cog.New(name, s, d.HTTP, d.Callbacks, d.PublicURL)
		},
	}
}

// planned returns the executor types the config file knows by name whose
// executors are not in this build yet; configuring one is an error saying
// so.
func planned() []string {
	return nil // every type the config file names is built today
}

// Types returns the executor types this build can run, sorted.
func Types() []string {
	b := builtins()
	out := make([]string, 0, len(b))
	for k := range b {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Default returns the executors a process has without a config file: mock
// and local, with default settings.
func Default() *executor.Set {
	set, err := Build(map[string]Entry{mock.Kind: {Type: mock.Kind}, local.Kind: {Type: local.Kind}}, nil)
	if err != nil {
		panic(fmt.Sprintf("executors: the default set is invalid: %v", err)) // a programming error
	}
	return set
}

// Build builds the configured executors and routes with no process
// dependencies (BuildWith). Errors name the entry (its Where) and the
// problem.
func Build(entries map[string]Entry, routes map[string]executor.Route) (*executor.Set, error) {
	return BuildWith(entries, routes, Deps{})
}

// BuildWith builds the configured executors and routes, handing deps to
// the executors that need them. Errors name the entry (its Where) and the
// problem.
func BuildWith(entries map[string]Entry, routes map[string]executor.Route, deps Deps) (*executor.Set, error) {
	if deps.HTTP == nil {
		deps.HTTP = &http.Client{Timeout: 5 * time.Minute}
	}
	// Every call of the hosted executors (their APIs, uploads, output
	// downloads) is a client span of the run's trace, with traceparent.
	deps.HTTP = telemetry.WrapClient(deps.HTTP)
	set, known := executor.NewSet(), builtins()
	var comfySlots comfyui.Slots = comfyui.NewLocalSlots()
	if deps.Slots != nil {
		comfySlots = comfyui.NewSharedSlots(deps.Slots)
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		e := entries[name]
		where := "executors." + name
		if e.Where != "" {
			where += " (" + e.Where + ")"
		}
		f, ok := known[e.Type]
		switch {
		case !ok && slices.Contains(planned(), e.Type):
			return nil, fmt.Errorf("%s: executor type %q is not in this build yet (available: %s)", where, e.Type, strings.Join(Types(), ", "))
		case !ok:
			return nil, fmt.Errorf("%s: unknown executor type %q (want one of: %s)", where, e.Type, strings.Join(append(Types(), planned()...), ", "))
		}
		limits, rest, err := splitLimits(e.Settings)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		ex, err := f(name, strictDecoder(rest), env{Deps: deps, dir: e.Dir, comfySlots: comfySlots})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if err := set.Add(e.Type, ex); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if err := set.SetLimits(name, limits); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	types := make([]string, 0, len(routes))
	for t := range routes {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		if err := set.Route(t, routes[t]); err != nil {
			return nil, fmt.Errorf("types.%s: %w", t, err)
		}
	}
	return set, nil
}

// limitKeys are the settings every executor takes, its Limits.
var limitKeys = []string{"batch", "concurrency", "starts_per_minute"}

// splitLimits takes the settings every executor has (limitKeys) out of
// raw: its limits, and the rest for the executor type's own settings.
func splitLimits(raw json.RawMessage) (executor.Limits, json.RawMessage, error) {
	var l executor.Limits
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return l, raw, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return l, raw, nil // not an object: the type's decoder says so
	}
	for _, k := range limitKeys {
		v, ok := m[k]
		if !ok {
			continue
		}
		delete(m, k)
		if k == "batch" {
			b, err := parseBatch(v)
			if err != nil {
				return l, nil, err
			}
			l.Batch = b
			continue
		}
		var n int
		if err := json.Unmarshal(v, &n); err != nil || n < 0 {
			return l, nil, fmt.Errorf("%s: want a whole number, 0 or more (0: no limit), got %s", k, v)
		}
		if k == "concurrency" {
			l.Concurrency = n
		} else {
			l.StartsPerMinute = n
		}
	}
	rest, err := json.Marshal(m)
	if err != nil {
		return l, nil, err
	}
	return l, rest, nil
}

// parseBatch reads an executor's `batch: {max_size: N, max_wait: "500ms"}`;
// errors name the key and say what it wants. An omitted max_wait is
// executor.DefaultBatchWait.
func parseBatch(raw json.RawMessage) (executor.Batching, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return executor.Batching{}, fmt.Errorf("batch: want a mapping {max_size, max_wait}, got %s", raw)
	}
	for k := range m {
		if k != "max_size" && k != "max_wait" {
			return executor.Batching{}, fmt.Errorf("batch: unknown setting %q (known: max_size, max_wait)", k)
		}
	}
	v, ok := m["max_size"]
	if !ok {
		return executor.Batching{}, fmt.Errorf("batch.max_size: required (1 to %d)", executor.MaxBatchSize)
	}
	var out executor.Batching
	if err := json.Unmarshal(v, &out.MaxSize); err != nil || out.MaxSize < 1 {
		return executor.Batching{}, fmt.Errorf("batch.max_size: want 1 to %d, got %s", executor.MaxBatchSize, v)
	}
	out.MaxWait = executor.DefaultBatchWait
	if v, ok := m["max_wait"]; ok {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return out, fmt.Errorf("batch.max_wait: want a duration like \"500ms\" (0s to %s), got %s", executor.MaxBatchWait, v)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return out, fmt.Errorf("batch.max_wait %q: want a duration like \"500ms\" (0s to %s)", s, executor.MaxBatchWait)
		}
		out.MaxWait = d
	}
	return out, out.Validate()
}

// strictDecoder decodes raw into a settings struct, refusing unknown keys.
func strictDecoder(raw json.RawMessage) func(v any) error {
	return func(v any) error {
		if len(raw) == 0 {
			return nil
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			// The settings were YAML: say what a user wrote, not what
			// encoding/json calls it.
			if key, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				known := append(settingNames(v), limitKeys...)
				sort.Strings(known)
				return fmt.Errorf("unknown setting %s (known: %s)", key, strings.Join(known, ", "))
			}
			return fmt.Errorf("settings: %s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return nil
	}
}

// settingNames lists the keys a settings struct takes (its json tags,
// with those of embedded structs).
func settingNames(v any) []string {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
				walk(f.Type)
			case name != "" && name != "-":
				out = append(out, name)
			}
		}
	}
	walk(t)
	sort.Strings(out)
	return out
}
