package backgroundfix

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"math"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/generation"
	"github.com/computeserver/compute/internal/tasks/imagetask"
)

// Output is the result data of a background_fix task.
type Output struct {
	// Width and Height are the size of the result (the input's).
	Width  int `json:"width"`
	Height int `json:"height"`
	// Background says what the new background is: color, image or prompt.
	Background string `json:"background"`
	// Format is the format of the result (png or jpeg).
	Format string `json:"format"`
}

// Processor runs background_fix tasks.
type Processor struct {
	run imagetask.Runner
	// genKinds are the executor types generation tasks run on: a
	// prompt's background is drawn by the executor they resolve to.
	genKinds []string
}

var (
	_ registry.ProcessorOf[Fields] = (*Processor)(nil)
	_ registry.ResumerOf[Fields]   = (*Processor)(nil)
)

// Process implements registry.ProcessorOf: cut-out (executor, unless
// is_cutout), background (colour, image, or drawn by the generation
// executor), composite (Go).
func (p *Processor) Process(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	f := job.Fields
	if err := f.Validate(); err != nil {
		return nil, task.Permanent(fmt.Errorf("invalid fields: %w", err))
	}
	tenant := job.Task.OriginTenantID
	if err := job.Progress(ctx, 1, "reading the image"); err != nil {
		return nil, err
	}
	in, err := imagetask.Read(ctx, p.run.Fetcher, tenant, "image_url", f.ImageURL)
	if err != nil {
		return nil, err
	}
	var bgIn *imagetask.Input
	if f.BackgroundImageURL != nil {
		// Read before the (slow) cut-out, so a bad background fails fast.
		if bgIn, err = imagetask.Read(ctx, p.run.Fetcher, tenant, "background_image_url", *f.BackgroundImageURL); err != nil {
			return nil, err
		}
	}
	var artifacts []task.Artifact
	cut := in
	if !f.IsCutout {
		art, out, err := imagetask.Run(ctx, p.run, job, Operation, DefaultProvider, imagetask.Scaled(job.Progress, 5, 60))
		if err != nil {
			return nil, err
		}
		artifacts = append(artifacts, out.Artifacts...)
		f.CutoutImagePath = &art.Key
		if cut, err = imagetask.Read(ctx, p.run.Fetcher, tenant, "the cut-out", artifact.PathPrefix+art.Key); err != nil {
			return nil, executor.Classify(executor.ProviderError, err)
		}
	}
	subject, err := cut.Decode("image_url")
	if err != nil {
		return nil, err
	}
	frame := image.Rect(0, 0, in.Config.Width, in.Config.Height)
	if subject.Bounds().Dx() != frame.Dx() || subject.Bounds().Dy() != frame.Dy() {
		frame = image.Rect(0, 0, subject.Bounds().Dx(), subject.Bounds().Dy())
	}
	if err := job.Progress(ctx, 65, "making the background"); err != nil {
		return nil, err
	}
	var bg *image.NRGBA
	kind := "color"
	switch {
	case f.BackgroundColor != nil:
		c, _ := ParseColor(*f.BackgroundColor) // validated
		bg = Plain(c, frame)
	case bgIn != nil:
		kind = "image"
		img, err := bgIn.Decode("background_image_url")
		if err != nil {
			return nil, err
		}
		bg = Cover(img, frame)
	default:
		kind = "prompt"
		art, img, err := p.drawBackground(ctx, job, *f.BackgroundPrompt, frame)
		if err != nil {
			return nil, err
		}
		artifacts = append(artifacts, art)
		f.BackgroundImagePath = &art.Key
		bg = Cover(img, frame)
	}
	if err := job.Progress(ctx, 90, "compositing"); err != nil {
		return nil, err
	}
	data, name, contentType, err := Encode(Composite(bg, subject), f.OutputFormat)
	if err != nil {
		return nil, fmt.Errorf("encoding the result: %w", err)
	}
	res, err := job.PutArtifact(ctx, name, contentType, data)
	if err != nil {
		return nil, fmt.Errorf("storing the result: %w", err)
	}
	res.Width, res.Height = frame.Dx(), frame.Dy()
	f.ResultImagePath = &res.Key
	if err := job.SaveFields(ctx); err != nil {
		return nil, fmt.Errorf("saving result paths: %w", err)
	}
	if err := job.Progress(ctx, 100, "done"); err != nil {
		return nil, err
	}
	return &task.Result{
		Artifacts: append([]task.Artifact{res}, artifacts...),
		Data:      Output{Width: res.Width, Height: res.Height, Background: kind, Format: f.OutputFormat},
	}, nil
}

// drawBackground has the executor that runs generation tasks draw prompt
// at about frame's shape (sides multiples of 8, the longer 1024) and
// returns the stored image, decoded. The job is not resumed on recovery:
// it runs again.
func (p *Processor) drawBackground(ctx context.Context, job *registry.Job[Fields], prompt string, frame image.Rectangle) (task.Artifact, image.Image, error) {
	name, err := p.run.Executors.Resolve(generation.Name, p.genKinds, generation.ProviderMock, "")
	if err != nil {
		return task.Artifact{}, nil, task.Permanent(fmt.Errorf("background_prompt needs an executor for generation tasks: %w", err))
	}
	w, h := drawSize(frame.Dx(), frame.Dy())
	seed := generation.DeriveSeed(job.Task.ID)
	fields, err := json.Marshal(map[string]any{"prompt": prompt, "width": w, "height": h, "seed": seed,
		"num_inference_steps": 28, "guidance_scale": 3.5})
	if err != nil {
		return task.Artifact{}, nil, err
	}
	ej := &executor.Job{
		TaskID: job.Task.ID, Type: generation.Name, Attempt: job.Task.Attempt, Operation: generation.Operation,
		Fields: fields, Put: job.PutArtifact, AddError: job.AddError,
		SaveHandle: func(context.Context, executor.Handle) error { return nil },
	}
	out, err := p.run.Executors.Run(ctx, name, false, ej, imagetask.Scaled(job.Progress, 65, 88))
	if err != nil {
		return task.Artifact{}, nil, err
	}
	if len(out.Artifacts) == 0 {
		return task.Artifact{}, nil, executor.Errorf(executor.ProviderError, "executor %s drew no background", name)
	}
	art := out.Artifacts[0]
	in, err := imagetask.Read(ctx, p.run.Fetcher, job.Task.OriginTenantID, "the generated background", artifact.PathPrefix+art.Key)
	if err != nil {
		return task.Artifact{}, nil, executor.Classify(executor.ProviderError, err)
	}
	img, err := in.Decode("the generated background")
	if err != nil {
		return task.Artifact{}, nil, executor.Classify(executor.ProviderError, err)
	}
	return art, img, nil
}

// drawSize is the size a background for a w×h frame is drawn at: the
// frame's shape with the longer side 1024, sides multiples of 8 and at
// least 64.
func drawSize(w, h int) (int, int) {
	s := 1024 / math.Max(float64(w), float64(h))
	side := func(v int) int { return max(64, int(math.Round(float64(v)*s/8))*8) }
	return side(w), side(h)
}

// Resume implements registry.ResumerOf: the cut-out re-attaches to a
// hosted job through its saved handle or starts afresh; the rest runs
// again.
func (p *Processor) Resume(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	return p.Process(ctx, job)
}
