package executor_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/inproc"
	"github.com/computeserver/compute/internal/executor/mock"
)

// fallbackSet has generation routed to gpu with cheap as its fallback;
// each mock has its own job table, returned for taking it down.
func fallbackSet(t *testing.T) (*executor.Set, map[string]*inproc.Jobs) {
	t.Helper()
	set, tables := executor.NewSet(), map[string]*inproc.Jobs{}
	for _, name := range []string{"gpu", "cheap"} {
		tables[name] = inproc.New(0)
		ex, err := mock.New(name, mock.Settings{}, tables[name])
		if err != nil {
			t.Fatal(err)
		}
		if err := set.Add("mock", ex); err != nil {
			t.Fatal(err)
		}
	}
	if err := set.Route("generation", executor.Route{Executor: "gpu", Fallback: []string{"cheap"}}); err != nil {
		t.Fatal(err)
	}
	return set, tables
}

func TestFallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		down      []string
		requested bool
		executor  string // on which the job ran
		prompt    string
		wantErr   []string
	}{
		{name: "the routed executor runs it", executor: "gpu"},
		{name: "unavailable: the fallback takes over", down: []string{"gpu"}, executor: "cheap"},
		{name: "named by the client: no fallback", down: []string{"gpu"}, requested: true,
			wantErr: []string{"executor gpu: provider_unavailable"}},
		{name: "every one down", down: []string{"gpu", "cheap"},
			wantErr: []string{"executor cheap: provider_unavailable", "before it, executor gpu: provider_unavailable"}},
		// Both mocks fail this prompt: the error is the fallback's, naming
		// the routed executor's before it.
		{name: "start timeout: the fallback takes over", prompt: mock.FailPrefix + "start_timeout x",
			wantErr: []string{"executor cheap: start_timeout", "before it, executor gpu: start_timeout"}},
		{name: "other failures do not fail over", prompt: mock.FailPrefix + "safety_blocked x",
			wantErr: []string{"executor gpu: safety_blocked"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			set, tables := fallbackSet(t)
			for _, n := range tt.down {
				tables[n].SetDown(true)
			}
			var saved []executor.Handle
			job := memJob(&saved)
			job.Type = "generation"
			if tt.prompt != "" {
				job.Fields, _ = json.Marshal(map[string]any{"prompt": tt.prompt})
			}
			_, err := set.Run(t.Context(), "gpu", tt.requested, job, quiet)
			switch {
			case len(tt.wantErr) > 0:
				for _, w := range tt.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("err %v, want it to contain %q", err, w)
					}
				}
				return
			case err != nil:
				t.Fatalf("Run: %v", err)
			}
			if len(saved) != 1 || saved[0].Executor != tt.executor {
				t.Errorf("saved handles %+v, want one of %s", saved, tt.executor)
			}
		})
	}
}

// A recovered run resumes on the fallback that had its job.
func TestFallbackRecoversOnTheExecutorOfTheHandle(t *testing.T) {
	t.Parallel()
	set, tables := fallbackSet(t)
	id, err := tables["cheap"].Submit()
	if err != nil {
		t.Fatal(err)
	}
	var saved []executor.Handle
	job := memJob(&saved)
	job.Type = "generation"
	job.Saved = &executor.Handle{Executor: "cheap", ExternalID: id, Version: executor.HandleVersion}
	if _, err := set.Run(t.Context(), "gpu", false, job, quiet); err != nil {
		t.Fatal(err)
	}
	if tables["gpu"].Submissions() != 0 || tables["cheap"].Submissions() != 1 {
		t.Errorf("submissions: gpu %d, cheap %d; want 0, 1 (recovered on cheap)", tables["gpu"].Submissions(), tables["cheap"].Submissions())
	}
}
