package imagetask_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/fal/falfake"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/backgroundremove"
	"github.com/computeserver/compute/internal/tasks/faceenhancer"
	"github.com/computeserver/compute/internal/tasks/imagetask"
	"github.com/computeserver/compute/internal/tasks/refine"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
)

// runOn processes f with the processor newProc builds on set's executor
// provider, image_url naming the example picture stored first.
func runOn[M any](t *testing.T, set *executor.Set, taskType, provider string, f *M, setURL func(string),
	newProc func(*artifact.Fetcher, *executor.Set) registry.ProcessorOf[M]) (*task.Result, error) {
	t.Helper()
	job, rt := fakeruntime.NewJob(t, taskType, provider, f)
	if _, err := rt.Store.Put(context.Background(), inputKey, "image/png", imagetask.ExamplePNG()); err != nil {
		t.Fatal(err)
	}
	setURL(inputURL)
	return newProc(&artifact.Fetcher{Store: rt.Store}, set).Process(context.Background(), job)
}

// On fal, each type's task goes to the model its `models:` entry names,
// with the type's fields as the model's input (our artifact inlined as a
// data URI), and the model's output image becomes the result — here as
// an image-utility model answers: {"image": {"url", …}}.
func TestFalRunsTheImageTypes(t *testing.T) {
	t.Parallel()
	out := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(imagetask.ExampleCutoutPNG())
	}))
	t.Cleanup(out.Close)
	fake := falfake.NewServer(falfake.Config{Keys: []string{"id:secret"}, Outcome: func(falfake.Submission) falfake.Outcome {
		return falfake.Outcome{Output: map[string]any{"image": map[string]any{"url": out.URL + "/out.png", "width": 32, "height": 24}}}
	}})
	t.Cleanup(fake.Close)
	raw, err := json.Marshal(map[string]any{"key": "id:secret", "base_url": fake.URL, "storage_url": fake.URL, "cdn_url": fake.URL,
		"model": "fal-ai/flux/dev", "poll_interval": "10ms", "models": map[string]string{
			backgroundremove.Name: "owner/rembg", refine.Name: "owner/esrgan", faceenhancer.Name: "owner/face-restore"}})
	if err != nil {
		t.Fatal(err)
	}
	set, err := executors.Build(map[string]executors.Entry{"fal": {Type: "fal", Settings: raw}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, res *task.Result, err error, model string, want map[string]any) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if a := res.Artifacts[0]; a.Width != 32 || a.Height != 24 || a.ContentType != "image/png" {
			t.Errorf("%s: artifact %+v", name, a)
		}
		var sub *falfake.Submission
		for _, s := range fake.Submissions() {
			if s.Model == model {
				sub = &s
			}
		}
		if sub == nil {
			t.Fatalf("%s: no submission to %s in %+v", name, model, fake.Submissions())
		}
		var in map[string]any
		if err := json.Unmarshal(sub.Input, &in); err != nil {
			t.Fatal(err)
		}
		if u, _ := in["image_url"].(string); !strings.HasPrefix(u, "data:image/png;base64,") {
			t.Errorf("%s: image_url sent as %.40q, want our artifact inline", name, u)
		}
		for k, v := range want {
			if in[k] != v {
				t.Errorf("%s: input %s = %v, want %v", name, k, in[k], v)
			}
		}
	}
	bg := &backgroundremove.Fields{Model: "medium"}
	res, err := runOn(t, set, backgroundremove.Name, "fal", bg, func(u string) { bg.ImageURL = u },
		func(fe *artifact.Fetcher, s *executor.Set) registry.ProcessorOf[backgroundremove.Fields] {
			return backgroundremove.Type(fe, s).Processor
		})
	check("background_remove", res, err, "owner/rembg", nil)
	up := &refine.Fields{UpscaleFactor: 3, Strength: 1}
	res, err = runOn(t, set, refine.Name, "fal", up, func(u string) { up.ImageURL = u },
		func(fe *artifact.Fetcher, s *executor.Set) registry.ProcessorOf[refine.Fields] {
			return refine.Type(fe, s).Processor
		})
	check("refine", res, err, "owner/esrgan", map[string]any{"upscale_factor": 3.0})
	face := &faceenhancer.Fields{Strength: 0.5, MinConfidence: 0.5}
	res, err = runOn(t, set, faceenhancer.Name, "fal", face, func(u string) { face.ImageURL = u },
		func(fe *artifact.Fetcher, s *executor.Set) registry.ProcessorOf[faceenhancer.Fields] {
			return faceenhancer.Type(fe, s).Processor
		})
	check("face_enhancer", res, err, "owner/face-restore", map[string]any{"strength": 0.5})
	if face.FacesFound != nil {
		t.Errorf("faces_found %d, want none: fal did not say", *face.FacesFound)
	}
}
