package generation

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// ArtifactName is the name of the generated image among the task's
// artifacts.
const ArtifactName = "image.png"

// Output is the result data of a generation task.
type Output struct {
	// Seed is the seed used (given or derived).
	Seed int64 `json:"seed"`
	// Width and Height are the size of the stored image, which the mock
	// provider may have scaled down.
	Width  int `json:"width"`
	Height int `json:"height"`
}

// Processor runs generation tasks.
type Processor struct {
	mock *mock.Executor
}

var _ registry.ProcessorOf[Fields] = (*Processor)(nil)

// DeriveSeed returns the seed of a task that names none: a hash of its id,
// below 2^32 so every provider accepts it, and the same on every attempt.
func DeriveSeed(id uuid.UUID) int64 {
	sum := sha256.Sum256(id[:])
	return int64(binary.BigEndian.Uint32(sum[:4]))
}

// Process implements registry.ProcessorOf.
func (p *Processor) Process(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	f := job.Fields
	provider := job.Task.ProviderType
	if provider == "" {
		provider = ProviderMock
	}
	if provider != ProviderMock {
		return nil, task.Permanent(fmt.Errorf("provider %s is not available yet", provider))
	}
	// A task stored before validation existed, or built in Go, must not
	// reach the executor with impossible values.
	if err := f.Validate(); err != nil {
		return nil, task.Permanent(fmt.Errorf("invalid fields: %w", err))
	}
	if f.Seed == nil {
		seed := DeriveSeed(job.Task.ID)
		f.Seed = &seed
		if err := job.SaveFields(ctx); err != nil {
			return nil, fmt.Errorf("saving derived seed: %w", err)
		}
	}

	// The executor reports 10–100 %; the processor keeps the last tenth
	// for storing the result.
	progress := func(ctx context.Context, pct float64, stage string) error {
		return job.Progress(ctx, pct*0.9, stage)
	}
	img, err := p.mock.RenderImage(ctx, mock.ImageRequest{
		Prompt: f.Prompt, Seed: *f.Seed, Width: f.Width, Height: f.Height,
	}, progress)
	if err != nil {
		return nil, fmt.Errorf("rendering image: %w", err)
	}

	art, err := job.PutArtifact(ctx, ArtifactName, "image/png", img.PNG)
	if err != nil {
		return nil, fmt.Errorf("storing image: %w", err)
	}
	seed := *f.Seed
	art.Width, art.Height, art.Seed = img.Width, img.Height, &seed
	key := art.Key
	f.ResultImagePath = &key
	if err := job.SaveFields(ctx); err != nil {
		return nil, fmt.Errorf("saving result path: %w", err)
	}
	if err := job.Progress(ctx, 100, "done"); err != nil {
		return nil, err
	}
	return &task.Result{
		Artifacts: []task.Artifact{art},
		Data:      Output{Seed: *f.Seed, Width: img.Width, Height: img.Height},
	}, nil
}
