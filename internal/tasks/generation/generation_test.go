package generation_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/generation"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
)

func ptr[T any](v T) *T { return &v }

// valid returns fields as the API would store them: defaults applied.
func valid() *generation.Fields {
	return &generation.Fields{
		Prompt:                 "a linen summer dress on a beach",
		Width:                  128,
		Height:                 64,
		NumInferenceSteps:      28,
		GuidanceScale:          3.5,
		SubjectLoraWeight:      1,
		ProductLoraWeight:      1,
		StyleLoraWeight:        1,
		Product2LoraWeight:     1,
		ReferenceImageStrength: 0.5,
	}
}

func TestDeclare(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	if err := reg.Register(generation.Type(generation.Config{})); err != nil {
		t.Fatal(err)
	}
	def, ok := reg.Lookup(generation.Name)
	if !ok {
		t.Fatal("not registered")
	}
	if def.Table != "generation_tasks" || def.DefaultProvider != "mock" {
		t.Errorf("table %q, default provider %q", def.Table, def.DefaultProvider)
	}
	if want := "[mock comfyui fal replicate cog openai gemini command]"; fmt.Sprint(def.Providers) != want {
		t.Errorf("providers %v, want %s", def.Providers, want)
	}
	readOnly := map[string]bool{}
	for _, c := range def.Columns {
		readOnly[c.Name] = c.ReadOnly
	}
	for _, name := range []string{"workflow_id", "comfy_prompt_id", "comfy_server_url",
		"comfyui_retry_server_urls", "comfy_workflow_data", "result_image_path"} {
		if !readOnly[name] {
			t.Errorf("column %s should be read-only", name)
		}
	}
	// The product backend sets its ids at create, as the original's does.
	for _, name := range []string{"backend_generation_id", "backend_prediction_id", "comfy_workflow"} {
		if readOnly[name] {
			t.Errorf("column %s should be writable", name)
		}
	}
	if len(def.UpdateFields) != 20 {
		t.Errorf("%d update fields, want 20 (every writable field)", len(def.UpdateFields))
	}
}

func TestDefaultsAndValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		change    func(f *generation.Fields)
		wantField string // "" means valid
	}{
		{name: "valid", change: func(*generation.Fields) {}},
		{name: "zero weights and guidance are choices", change: func(f *generation.Fields) {
			f.SubjectLoraWeight, f.GuidanceScale, f.ReferenceImageStrength = 0, 0, 0
		}},
		{name: "largest", change: func(f *generation.Fields) { f.Width, f.Height = 4096, 4096 }},
		{name: "empty prompt", change: func(f *generation.Fields) { f.Prompt = "" }, wantField: "prompt"},
		{name: "long prompt", change: func(f *generation.Fields) { f.Prompt = strings.Repeat("é", 10001) }, wantField: "prompt"},
		{name: "prompt of 10000 multibyte characters", change: func(f *generation.Fields) { f.Prompt = strings.Repeat("é", 10000) }},
		{name: "width not multiple of 8", change: func(f *generation.Fields) { f.Width = 1020 }, wantField: "width"},
		{name: "height not multiple of 8", change: func(f *generation.Fields) { f.Height = 100 }, wantField: "height"},
		{name: "width too small", change: func(f *generation.Fields) { f.Width = 56 }, wantField: "width"},
		{name: "height too large", change: func(f *generation.Fields) { f.Height = 4104 }, wantField: "height"},
		{name: "negative seed", change: func(f *generation.Fields) { f.Seed = ptr(int64(-1)) }, wantField: "seed"},
		{name: "zero seed", change: func(f *generation.Fields) { f.Seed = ptr(int64(0)) }},
		{name: "steps", change: func(f *generation.Fields) { f.NumInferenceSteps = 151 }, wantField: "num_inference_steps"},
		{name: "guidance", change: func(f *generation.Fields) { f.GuidanceScale = 30.5 }, wantField: "guidance_scale"},
		{name: "lora weight", change: func(f *generation.Fields) { f.Product2LoraWeight = 1.5 }, wantField: "product2_lora_weight"},
		{name: "reference strength", change: func(f *generation.Fields) { f.ReferenceImageStrength = -0.1 }, wantField: "reference_image_strength"},
		{name: "reference image as artifact path", change: func(f *generation.Fields) {
			f.ReferenceImageURL = ptr("/api/v1/artifacts/tasks/0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/ref.png")
		}},
		{name: "reference image as URL", change: func(f *generation.Fields) { f.ReferenceImageURL = ptr("https://example.com/ref.png") }},
		{name: "reference image not a URL", change: func(f *generation.Fields) { f.ReferenceImageURL = ptr("ref.png") }, wantField: "reference_image_url"},
		{name: "reference image over ftp", change: func(f *generation.Fields) { f.ReferenceImageURL = ptr("ftp://example.com/ref.png") }, wantField: "reference_image_url"},
	}
	def, err := generation.Type(generation.Config{}).Declare()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := valid()
			tt.change(f)
			err := def.PrepareModel(f)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var fe *registry.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Fatalf("got %v, want a FieldError for %s", err, tt.wantField)
			}
		})
	}
}

func TestApplyDefaultsKeepsZeroFloats(t *testing.T) {
	t.Parallel()
	f := &generation.Fields{Prompt: "p"}
	f.ApplyDefaults()
	if f.Width != 1024 || f.Height != 1024 || f.NumInferenceSteps != 28 {
		t.Errorf("defaults not applied: %+v", f)
	}
	if f.SubjectLoraWeight != 0 || f.GuidanceScale != 0 {
		t.Errorf("a zero weight or guidance must stay zero: %+v", f)
	}
}

func run(t *testing.T, provider string, f *generation.Fields) (*task.Result, *fakeruntime.Runtime, *registry.Job[generation.Fields], error) {
	t.Helper()
	job, rt := fakeruntime.NewJob(t, generation.Name, provider, f)
	res, err := generation.Type(generation.Config{}).Processor.Process(context.Background(), job)
	return res, rt, job, err
}

func TestProcessWithSeed(t *testing.T) {
	t.Parallel()
	f := valid()
	f.Seed = ptr(int64(1234))
	res, rt, _, err := run(t, "mock", f)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Artifacts) != 1 {
		t.Fatalf("%d artifacts, want 1", len(res.Artifacts))
	}
	art := res.Artifacts[0]
	if !strings.HasSuffix(art.Key, "/image.png") || art.ContentType != "image/png" || art.URL == "" {
		t.Errorf("artifact %+v", art)
	}
	if f.ResultImagePath == nil || *f.ResultImagePath != art.Key {
		t.Errorf("result_image_path %v, want %s", f.ResultImagePath, art.Key)
	}
	// One save, after the result path was set.
	var saved generation.Fields
	if rt.Saves() != 1 {
		t.Fatalf("%d saves, want 1", rt.Saves())
	}
	if err := rt.SavedFields(0, &saved); err != nil || saved.ResultImagePath == nil || *saved.ResultImagePath != art.Key {
		t.Errorf("saved %+v (%v)", saved, err)
	}
	data, err := rt.ReadArtifact(context.Background(), art.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil || cfg.Width != 128 || cfg.Height != 64 {
		t.Errorf("stored image %dx%d (%v), want 128x64", cfg.Width, cfg.Height, err)
	}
	// The stored image is the mock executor's for the same inputs.
	want, err := (&mock.Executor{}).RenderImage(context.Background(),
		mock.ImageRequest{Prompt: f.Prompt, Seed: 1234, Width: 128, Height: 64}, nil)
	if err != nil || !bytes.Equal(want.PNG, data) {
		t.Errorf("stored image differs from the mock's render (%v)", err)
	}
	out, ok := res.Data.(generation.Output)
	if !ok || out.Seed != 1234 || out.Width != 128 || out.Height != 64 {
		t.Errorf("result data %#v", res.Data)
	}
	if err := rt.CheckProgress(); err != nil {
		t.Error(err)
	}
	calls := rt.ProgressCalls()
	if len(calls) < 4 || calls[len(calls)-1].Percent != 100 {
		t.Errorf("progress %v: want several steps ending at 100", calls)
	}
}

func TestProcessDerivesAndSavesSeed(t *testing.T) {
	t.Parallel()
	f := valid()
	res, rt, job, err := run(t, "", f)
	if err != nil {
		t.Fatal(err)
	}
	want := generation.DeriveSeed(job.Task.ID)
	if f.Seed == nil || *f.Seed != want {
		t.Fatalf("seed %v, want %d", f.Seed, want)
	}
	// The seed is saved before rendering, so a retry draws the same image.
	var first generation.Fields
	if err := rt.SavedFields(0, &first); err != nil || first.Seed == nil || *first.Seed != want || first.ResultImagePath != nil {
		t.Errorf("first save %+v (%v): want the seed alone", first, err)
	}
	if rt.Saves() != 2 {
		t.Errorf("%d saves, want 2 (seed, then result path)", rt.Saves())
	}
	if res.Data.(generation.Output).Seed != want {
		t.Errorf("result seed %d, want %d", res.Data.(generation.Output).Seed, want)
	}
	if want < 0 || want > 1<<32-1 {
		t.Errorf("derived seed %d outside 0..2^32-1", want)
	}
}

func TestSameInputsSameImage(t *testing.T) {
	t.Parallel()
	images := make([][]byte, 3)
	for i, seed := range []int64{7, 7, 8} {
		f := valid()
		f.Seed = ptr(seed)
		res, rt, _, err := run(t, "mock", f)
		if err != nil {
			t.Fatal(err)
		}
		if images[i], err = rt.ReadArtifact(context.Background(), res.Artifacts[0].Key); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(images[0], images[1]) {
		t.Error("two tasks with the same prompt and seed gave different images")
	}
	if bytes.Equal(images[0], images[2]) {
		t.Error("different seeds gave the same image")
	}
}

func TestLargeRequestIsCapped(t *testing.T) {
	t.Parallel()
	f := valid()
	f.Width, f.Height, f.Seed = 4096, 2048, ptr(int64(1))
	res, _, _, err := run(t, "mock", f)
	if err != nil {
		t.Fatal(err)
	}
	out := res.Data.(generation.Output)
	if out.Width != mock.DefaultMaxSide || out.Height != mock.DefaultMaxSide/2 {
		t.Errorf("rendered %dx%d, want %dx%d", out.Width, out.Height, mock.DefaultMaxSide, mock.DefaultMaxSide/2)
	}
}

func TestProcessFailures(t *testing.T) {
	t.Parallel()
	stale := task.ErrStaleRun
	tests := []struct {
		name          string
		provider      string
		change        func(f *generation.Fields)
		inject        func(rt *fakeruntime.Runtime)
		wantPermanent bool
		wantErr       string
		wantIs        error
	}{
		{name: "comfyui not available", provider: "comfyui", wantPermanent: true, wantErr: `executor "comfyui" is not configured`},
		{name: "fal not available", provider: "fal", wantPermanent: true, wantErr: `executor "fal" is not configured`},
		{name: "replicate not available", provider: "replicate", wantPermanent: true, wantErr: `executor "replicate" is not configured`},
		{name: "invalid stored fields", provider: "mock", change: func(f *generation.Fields) { f.Width = 100 },
			wantPermanent: true, wantErr: "width: must be a multiple of 8"},
		{name: "artifact store down", provider: "mock", inject: func(rt *fakeruntime.Runtime) { rt.PutErr = errors.New("disk full") },
			wantErr: "storing image: disk full"},
		{name: "lost the task while saving", provider: "mock", inject: func(rt *fakeruntime.Runtime) { rt.SaveErr = stale },
			wantIs: stale},
		{name: "lost the task while reporting progress", provider: "mock",
			change: func(f *generation.Fields) { f.Seed = ptr(int64(3)) },
			inject: func(rt *fakeruntime.Runtime) { rt.ProgressErr = stale }, wantIs: stale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := valid()
			if tt.change != nil {
				tt.change(f)
			}
			job, rt := fakeruntime.NewJob(t, generation.Name, tt.provider, f)
			if tt.inject != nil {
				tt.inject(rt)
			}
			res, err := generation.Type(generation.Config{}).Processor.Process(context.Background(), job)
			if err == nil {
				t.Fatalf("no error, result %+v", res)
			}
			if task.IsPermanent(err) != tt.wantPermanent {
				t.Errorf("permanent = %v, want %v (%v)", task.IsPermanent(err), tt.wantPermanent, err)
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
			if len(rt.Artifacts()) != 0 && tt.inject == nil {
				t.Errorf("artifacts stored on failure: %v", rt.Artifacts())
			}
		})
	}
}

func TestProcessHonoursCancellation(t *testing.T) {
	t.Parallel()
	f := valid()
	f.Seed = ptr(int64(5))
	job, _ := fakeruntime.NewJob(t, generation.Name, "mock", f)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := generation.Type(generation.Config{}).Processor.Process(ctx, job)
	if !errors.Is(err, context.Canceled) || task.IsPermanent(err) {
		t.Errorf("got %v, want a retryable context.Canceled", err)
	}
}
