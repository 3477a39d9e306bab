package training

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// Output is the result data of a training task.
type Output struct {
	// WeightsURL is the URL of the trained LoRA weights artifact.
	WeightsURL string `json:"weights_url"`
	// ConfigURL is the URL of the training configuration, when the
	// trainer wrote one.
	ConfigURL string `json:"config_url,omitempty"`
	// TriggerWord is the trigger word trained, when given.
	TriggerWord string `json:"trigger_word,omitempty"`
	// Steps is the number of steps trained.
	Steps int `json:"steps"`
	// StartStep is the step the last attempt started from: above 0 when it
	// resumed from a checkpoint, as reported by the trainer (the command
	// executor's scripts report it as RESULT {"start_step": N}); absent
	// when the trainer does not say.
	StartStep *int `json:"start_step,omitempty"`
}

// Processor runs training tasks on the executor their provider_type names.
type Processor struct {
	executors *executor.Set
	fetcher   *artifact.Fetcher
}

var (
	_ registry.ProcessorOf[Fields] = (*Processor)(nil)
	_ registry.ResumerOf[Fields]   = (*Processor)(nil)
)

// Process implements registry.ProcessorOf. The executor gets the fields
// as they are (they are fal's input names) and a reader of the task's
// inputs, through which the command executor also reads a recovered run's
// last checkpoint; the weights are the first .safetensors output, else the
// first output that is not JSON or text.
func (p *Processor) Process(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	f := job.Fields
	// A task built in Go may name no executor: the type's default runs it.
	name := cmp.Or(job.Task.ProviderType, ProviderMock)
	if err := f.Validate(); err != nil {
		return nil, task.Permanent(fmt.Errorf("invalid fields: %w", err))
	}
	// Outputs of an earlier attempt are not inputs of this one.
	f.WeightsPath, f.WeightsURL, f.ConfigURL = nil, nil, nil
	ej, err := executor.FromJob(job, Operation)
	if err != nil {
		return nil, err
	}
	tenant := job.Task.OriginTenantID
	ej.OpenInput = func(ctx context.Context, url string) ([]byte, error) {
		data, _, err := p.fetcher.Open(ctx, tenant, url)
		return data, err
	}
	ej.OpenInputStream = func(ctx context.Context, url string) (io.ReadCloser, int64, error) {
		return p.fetcher.OpenStream(ctx, tenant, url)
	}
	// A hosted trainer downloads images_data_url (a zip, often large)
	// from the bucket itself when the store can presign it.
	ej.PresignInput = func(ctx context.Context, url string) (string, bool, error) {
		return p.fetcher.Presign(ctx, tenant, url, artifact.DefaultPresignTTL)
	}
	// The executor reports 0–100 %; the processor keeps the last
	// twentieth for recording the weights.
	progress := executor.ReporterFunc(func(ctx context.Context, pct float64, stage string) error {
		return job.Progress(ctx, pct*0.95, stage)
	})
	out, err := p.executors.Run(ctx, name, job.Task.ProviderRequested, ej, progress)
	if err != nil {
		return nil, err
	}
	weights, config := pick(out.Artifacts)
	if weights == nil {
		return nil, executor.Errorf(executor.ProviderError, "executor %s returned no weights file", name)
	}
	key, url := weights.Key, weights.URL
	f.WeightsPath, f.WeightsURL = &key, &url
	res := Output{WeightsURL: url, Steps: f.Steps}
	if config != nil {
		c := config.URL
		f.ConfigURL, res.ConfigURL = &c, c
	}
	if f.TriggerWord != nil {
		res.TriggerWord = *f.TriggerWord
	}
	if n, ok := intOf(out.Data["start_step"]); ok {
		res.StartStep = &n
	}
	if err := job.SaveFields(ctx); err != nil {
		return nil, fmt.Errorf("saving the weights' URL: %w", err)
	}
	if err := job.Progress(ctx, 100, "done"); err != nil {
		return nil, err
	}
	return &task.Result{Artifacts: out.Artifacts, Data: res}, nil
}

// Resume implements registry.ResumerOf: the run re-attaches to its job
// through the handle its lost run saved (a hosted training keeps running
// at the provider), or starts afresh from the last checkpoint the handle
// names (the command executor).
func (p *Processor) Resume(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	return p.Process(ctx, job)
}

// pick returns the weights among a training's outputs — the first
// .safetensors file, else the first that is neither JSON nor text (a
// trainer's .tar or .zip) — and the configuration, the first JSON file.
// Checkpoints are never the result.
func pick(arts []task.Artifact) (weights, config *task.Artifact) {
	var other *task.Artifact
	for i := range arts {
		a := &arts[i]
		name := strings.ToLower(path.Base(a.Key))
		if strings.Contains(a.Key, "/checkpoints/") {
			continue
		}
		switch ext := path.Ext(name); {
		case ext == ".safetensors":
			if weights == nil {
				weights = a
			}
		case ext == ".json":
			if config == nil {
				config = a
			}
		case ext == ".txt" || ext == ".log" || strings.HasPrefix(a.ContentType, "text/"):
		default:
			if other == nil {
				other = a
			}
		}
	}
	if weights == nil {
		weights = other
	}
	return weights, config
}

// intOf reads a whole number from result data (JSON numbers decode as
// float64).
func intOf(v any) (int, bool) {
	switch n := v.(type) {
	case float64:
		return int(n), n == float64(int(n))
	case int:
		return n, true
	case int64:
		return int(n), true
	}
	return 0, false
}
