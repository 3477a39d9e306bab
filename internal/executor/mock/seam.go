package mock

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/inproc"
	"github.com/computeserver/compute/internal/task"
)

// Kind is the executor type name of the mock in the config file.
const Kind = "mock"

// FailPrefix starts a prompt that makes the mock fail the job, for
// development and tests: "mock-fail:safety_blocked a dress" fails with
// category safety_blocked once the job runs. The category is the word after
// the prefix; a word that names no category fails as invalid input.
const FailPrefix = "mock-fail:"

// ArtifactName is the name of the rendered image among a job's outputs.
const ArtifactName = "image.png"

// Settings are the mock's settings in the config file
// (`executors: {NAME: {type: mock, …}}`).
type Settings struct {
	// StepDelay is slept before each of the four progress steps, e.g.
	// "500ms", to make progress visible in development.
	StepDelay string `json:"step_delay"`
	// MaxSide caps the rendered size (default 1024).
	MaxSide int `json:"max_side"`
	// Slots is how many jobs render at once; more wait queued (0: no
	// limit).
	Slots int `json:"slots"`
}

// New returns the mock executor called name. jobs is its job table (nil: a
// table of its own); two executors sharing one stand for one service, as
// the executor harness uses to exercise recovery.
func New(name string, s Settings, jobs *inproc.Jobs) (*Executor, error) {
	e := &Executor{name: name, MaxSide: s.MaxSide, jobs: jobs}
	if s.StepDelay != "" {
		d, err := time.ParseDuration(s.StepDelay)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("step_delay %q: want a duration such as 500ms", s.StepDelay)
		}
		e.StepDelay = d
	}
	if s.MaxSide < 0 || s.Slots < 0 {
		return nil, fmt.Errorf("max_side and slots must not be negative")
	}
	if e.jobs == nil {
		e.jobs = inproc.New(s.Slots)
	}
	return e, nil
}

var (
	_ executor.Executor = (*Executor)(nil)
	_ executor.Pinger   = (*Executor)(nil)
)

// table returns the job table, made on first use for a zero Executor.
func (e *Executor) table() *inproc.Jobs {
	e.initJobs.Do(func() {
		if e.jobs == nil {
			e.jobs = inproc.New(0)
		}
	})
	return e.jobs
}

// Name implements executor.Executor; a zero Executor is "mock".
func (e *Executor) Name() string {
	if e.name == "" {
		return Kind
	}
	return e.name
}

// Ping implements executor.Pinger: the mock is up unless its table is
// marked down.
func (e *Executor) Ping(context.Context) error { return e.table().Ping() }

// Start implements executor.Executor: the job is queued in the table.
func (e *Executor) Start(_ context.Context, job *executor.Job) (executor.Handle, error) {
	if _, err := decodeRequest(job); err != nil {
		return executor.Handle{}, err
	}
	id, err := e.table().Submit()
	if err != nil {
		return executor.Handle{}, err
	}
	return executor.Handle{Executor: e.Name(), ExternalID: id, Version: executor.HandleVersion}, nil
}

// Wait implements executor.Executor: the job renders when it gets a slot,
// reporting 10, 40, 70 and 100 percent, and stores ArtifactName; a
// training job (OpTrainLoRA) stores WeightsName and ConfigName instead
// (train.go), and a chat (OpChat) answers text (chat.go).
func (e *Executor) Wait(ctx context.Context, job *executor.Job, h executor.Handle, r executor.Reporter) (*executor.Output, error) {
	req, err := decodeRequest(job)
	if err != nil {
		return nil, err
	}
	var out *executor.Output
	err = e.table().Run(ctx, h.ExternalID, func(ctx context.Context) error {
		if e.Hook != nil {
			if err := e.Hook(ctx, job); err != nil {
				return err
			}
		}
		if job.Operation == OpTrainLoRA {
			var err error
			out, err = e.train(ctx, job, r)
			return err
		}
		if job.Operation == OpChat {
			var err error
			out, err = e.chat(ctx, job, r)
			return err
		}
		if err := scriptedFailure(req.Prompt); err != nil {
			return err
		}
		img, err := e.RenderImage(ctx, req, r.Progress)
		if err != nil {
			return err
		}
		art, err := job.Put(ctx, ArtifactName, "image/png", img.PNG)
		if err != nil {
			return fmt.Errorf("storing image: %w", err)
		}
		seed := req.Seed
		art.Width, art.Height, art.Seed = img.Width, img.Height, &seed
		out = &executor.Output{Artifacts: []task.Artifact{art}, Data: map[string]any{"seed": req.Seed, "width": img.Width, "height": img.Height}}
		return nil
	})
	return out, err
}

// Cancel implements executor.Executor.
func (e *Executor) Cancel(_ context.Context, h executor.Handle) error {
	e.table().Cancel(h.ExternalID)
	return nil
}

// Recover implements executor.Executor: a job still in the table is
// waited on again; one that is not (its process ended) is lost.
func (e *Executor) Recover(_ context.Context, _ *executor.Job, h executor.Handle) (executor.Handle, error) {
	return e.table().Recover(h)
}

// request is what the mock reads from a job's fields; any task type's
// fields will do, absent sizes default to 64.
type request struct {
	Prompt string `json:"prompt"`
	Seed   *int64 `json:"seed"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

func decodeRequest(job *executor.Job) (ImageRequest, error) {
	var r request
	if len(job.Fields) > 0 {
		if err := json.Unmarshal(job.Fields, &r); err != nil {
			return ImageRequest{}, executor.Errorf(executor.InvalidInput, "mock: reading fields: %w", err)
		}
	}
	req := ImageRequest{Prompt: r.Prompt, Width: r.Width, Height: r.Height}
	if r.Seed != nil {
		req.Seed = *r.Seed
	}
	if req.Width == 0 {
		req.Width = 64
	}
	if req.Height == 0 {
		req.Height = 64
	}
	if req.Width < 0 || req.Height < 0 {
		return ImageRequest{}, executor.Errorf(executor.InvalidInput, "mock: invalid size %dx%d", req.Width, req.Height)
	}
	return req, nil
}

// scriptedFailure is the failure a FailPrefix prompt asks for, or nil.
func scriptedFailure(prompt string) error {
	rest, ok := strings.CutPrefix(prompt, FailPrefix)
	if !ok {
		return nil
	}
	word, _, _ := strings.Cut(rest, " ")
	c := executor.Category(word)
	switch c {
	case executor.ProviderUnavailable, executor.ProviderError, executor.RateLimited, executor.InvalidInput,
		executor.SafetyBlocked, executor.Timeout, executor.StartTimeout, executor.Cancelled, executor.Lost:
		return executor.Errorf(c, "mock: the prompt asked for a %s failure", c)
	}
	return executor.Errorf(executor.InvalidInput, "mock: %q names no failure category", word)
}
