package editing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
	"github.com/computeserver/compute/internal/executor/fal/falfake"
	"github.com/computeserver/compute/internal/executor/gemini/geminifake"
	"github.com/computeserver/compute/internal/executor/openai/openaifake"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/editing"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

func ptr[T any](v T) *T { return &v }

// picture is a PNG of one colour.
func picture(t *testing.T, c color.NRGBA, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// images are a model photo and two garments.
type images struct{ model, dress, belt []byte }

func testImages(t *testing.T) images {
	return images{
		model: picture(t, color.NRGBA{180, 150, 130, 255}, 40, 60),
		dress: picture(t, color.NRGBA{230, 220, 200, 255}, 30, 30),
		belt:  picture(t, color.NRGBA{90, 60, 30, 255}, 20, 8),
	}
}

// job stores the images as artifacts and returns a try-on task reading
// them, with the fetcher that reads them.
func job(t *testing.T, provider string, im images) (*registry.Job[editing.Fields], *fakeruntime.Runtime, *artifact.Fetcher) {
	t.Helper()
	f := &editing.Fields{}
	j, rt := fakeruntime.NewJob(t, editing.Name, provider, f)
	put := func(name string, data []byte) string {
		a, err := rt.Store.Put(context.Background(), artifact.TaskKey("a1b2c3", name), "image/png", data)
		if err != nil {
			t.Fatal(err)
		}
		return artifact.PathPrefix + a.Key
	}
	*f = editing.Fields{
		ImageURL:           put("model.png", im.model),
		ReferenceImageURLs: []string{put("dress.png", im.dress), put("belt.png", im.belt)},
		Prompt:             "Dress the woman in the first image in the dress of the second and the belt of the third.",
	}
	return j, rt, &artifact.Fetcher{Store: rt.Store}
}

func build(t *testing.T, name, kind string, settings map[string]any, dir string) *executor.Set {
	t.Helper()
	raw, err := json.Marshal(settings)
	if err != nil {
		t.Fatal(err)
	}
	set, err := executors.Build(map[string]executors.Entry{name: {Type: kind, Settings: raw, Dir: dir}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// check runs the job and checks the stored result.
func check(t *testing.T, set *executor.Set, j *registry.Job[editing.Fields], rt *fakeruntime.Runtime, fetcher *artifact.Fetcher) *task.Result {
	t.Helper()
	res, err := editing.Type(fetcher, set).Processor.Process(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	art := res.Artifacts[len(res.Artifacts)-1]
	if j.Fields.ResultImagePath == nil || *j.Fields.ResultImagePath != art.Key || art.Width == 0 {
		t.Errorf("result_image_path %v, artifact %+v", j.Fields.ResultImagePath, art)
	}
	if out := res.Data.(editing.Output); out.References != 2 || out.Width != art.Width {
		t.Errorf("result data %+v", out)
	}
	if err := rt.CheckProgress(); err != nil {
		t.Error(err)
	}
	return res
}

func TestDeclare(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	if err := reg.Register(editing.Type(nil, nil)); err != nil {
		t.Fatal(err)
	}
	def, _ := reg.Lookup(editing.Name)
	if def == nil || def.Table != "editing_tasks" || def.DefaultProvider != "gemini" {
		t.Fatalf("definition %+v", def)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	valid := func() *editing.Fields {
		return &editing.Fields{ImageURL: "https://example.com/a.png", Prompt: "make it red"}
	}
	tests := []struct {
		name      string
		change    func(f *editing.Fields)
		wantField string
	}{
		{name: "valid", change: func(*editing.Fields) {}},
		{name: "references", change: func(f *editing.Fields) {
			f.ReferenceImageURLs = []string{"https://example.com/b.png", "/api/v1/artifacts/x/c.png"}
		}},
		{name: "no image", change: func(f *editing.Fields) { f.ImageURL = "" }, wantField: "image_url"},
		{name: "a bad reference", change: func(f *editing.Fields) { f.ReferenceImageURLs = []string{"https://example.com/b.png", "c.png"} }, wantField: "reference_image_urls[1]"},
		{name: "too many references", change: func(f *editing.Fields) { f.ReferenceImageURLs = make([]string, 9) }, wantField: "reference_image_urls"},
		{name: "no prompt", change: func(f *editing.Fields) { f.Prompt = "" }, wantField: "prompt"},
		{name: "a bad mask", change: func(f *editing.Fields) { f.MaskURL = ptr("ftp://x/m.png") }, wantField: "mask_url"},
		{name: "width alone", change: func(f *editing.Fields) { f.Width = ptr(512) }, wantField: "height"},
		{name: "too small", change: func(f *editing.Fields) { f.Width, f.Height = ptr(32), ptr(512) }, wantField: "width"},
	}
	for _, tt := range tests {
		f := valid()
		tt.change(f)
		err := f.Validate()
		var fe *registry.FieldError
		switch {
		case tt.wantField == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantField != "" && (!errors.As(err, &fe) || fe.Field != tt.wantField):
			t.Errorf("%s: got %v, want a FieldError for %s", tt.name, err, tt.wantField)
		}
	}
}

// TestGemini: the base image and the references go as inlineData parts of
// one turn, in order, after the instruction; the answer's image is the
// result.
func TestGemini(t *testing.T) {
	t.Parallel()
	fake := geminifake.Serve(geminifake.Config{})
	t.Cleanup(fake.Close)
	set := build(t, "nano", "gemini", map[string]any{"base_url": fake.URL, "key": "k", "model": "gemini-2.5-flash-image"}, "")
	im := testImages(t)
	j, rt, fetcher := job(t, "nano", im)
	j.Fields.Width, j.Fields.Height = ptr(768), ptr(1024)
	check(t, set, j, rt, fetcher)
	r := fake.Requests()[0]
	if len(r.Images) != 3 || !bytes.Equal(r.Images[0], im.model) || !bytes.Equal(r.Images[1], im.dress) || !bytes.Equal(r.Images[2], im.belt) ||
		!r.WantsImage() || !strings.HasPrefix(r.Prompt, "Dress the woman") {
		t.Errorf("request: %d images, prompt %q, modalities %v", len(r.Images), r.Prompt, r.Modalities)
	}
	if !strings.Contains(string(r.Body), `"aspectRatio":"3:4"`) {
		t.Errorf("request %s, want the aspect ratio of 768x1024", r.Body)
	}
}

// TestOpenAI: an image edit with the images as image[] parts and the
// size from width and height.
func TestOpenAI(t *testing.T) {
	t.Parallel()
	fake := openaifake.Serve(openaifake.Config{})
	t.Cleanup(fake.Close)
	set := build(t, "gpt", "openai", map[string]any{"base_url": fake.URL, "key": "sk", "model": "gpt-4.1-mini",
		"models": map[string]string{"editing": "gpt-image-1"}}, "")
	im := testImages(t)
	j, rt, fetcher := job(t, "gpt", im)
	j.Fields.Width, j.Fields.Height = ptr(1024), ptr(1536)
	check(t, set, j, rt, fetcher)
	r := fake.Requests()[0]
	var form map[string]string
	_ = json.Unmarshal(r.Body, &form)
	if r.Path != "/v1/images/edits" || r.Model != "gpt-image-1" || len(r.Images) != 3 || !bytes.Equal(r.Images[2], im.belt) || form["size"] != "1024x1536" {
		t.Errorf("request %s model %s, %d images, form %v", r.Path, r.Model, len(r.Images), form)
	}
}

// TestFal: the images are handed to fal's edit model as image_url and the
// image_urls list (inlined: fal cannot reach our artifacts).
func TestFal(t *testing.T) {
	t.Parallel()
	fake := falfake.NewServer(falfake.Config{})
	t.Cleanup(fake.Close)
	set := build(t, "fal", "fal", map[string]any{"key": "k", "base_url": fake.URL, "model": "fal-ai/nano-banana/edit",
		"poll_interval": "5ms", "poll_max": "20ms"}, "")
	im := testImages(t)
	j, rt, fetcher := job(t, "fal", im)
	check(t, set, j, rt, fetcher)
	subs := fake.Submissions()
	if len(subs) != 1 || subs[0].Model != "fal-ai/nano-banana/edit" {
		t.Fatalf("submissions %+v", subs)
	}
	var in struct {
		Prompt             string
		ImageURL           string   `json:"image_url"`
		ImageURLs          []string `json:"image_urls"`
		ReferenceImageURLs []string `json:"reference_image_urls"`
	}
	if err := json.Unmarshal(subs[0].Input, &in); err != nil {
		t.Fatal(err)
	}
	if len(in.ImageURLs) != 3 || in.ImageURLs[0] != in.ImageURL || in.ReferenceImageURLs != nil || !strings.HasPrefix(in.Prompt, "Dress") {
		t.Fatalf("fal input %s", subs[0].Input)
	}
	for i, want := range [][]byte{im.model, im.dress, im.belt} {
		if !strings.HasPrefix(in.ImageURLs[i], "data:image/png;base64,") || !strings.Contains(in.ImageURLs[i], b64(want)) {
			t.Errorf("image_urls[%d] is not the image inlined", i)
		}
	}
}

// TestComfyUI: a workflow template loads the base image and the first
// reference ({{input:reference_image_urls.0}}); both are uploaded to the
// server, and a template that loads a reference the task lacks is refused
// at create.
func TestComfyUI(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "wf"), 0o755); err != nil {
		t.Fatal(err)
	}
	graph := `{"1": {"class_type": "LoadImage", "inputs": {"image": "{{input:image_url}}"}},
	           "2": {"class_type": "LoadImage", "inputs": {"image": "{{input:reference_image_urls.0}}"}},
	           "3": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact", "width": 48, "height": 72, "crop": "disabled"}},
	           "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "tryon"}}}`
	if err := os.WriteFile(filepath.Join(dir, "wf", "tryon.json"), []byte(graph), 0o644); err != nil {
		t.Fatal(err)
	}
	set := build(t, "gpu", "comfyui", map[string]any{"servers": []map[string]any{{"url": fake.URL(), "slots": 1}},
		"workflows": "wf", "defaults": map[string]string{"editing": "tryon"}, "poll_interval": "50ms"}, dir)
	im := testImages(t)
	j, rt, fetcher := job(t, "gpu", im)
	res := check(t, set, j, rt, fetcher)
	if a := res.Artifacts[len(res.Artifacts)-1]; a.Width != 48 || a.Height != 72 {
		t.Errorf("artifact %+v, want 48x72", a)
	}
	if ups := fake.Stats().Uploads; len(ups) != 2 {
		t.Errorf("uploads %+v, want the model and the dress", ups)
	}

	sched := editing.Type(fetcher, set).Scheduler
	tk := &task.Task{Type: editing.Name, ProviderType: "gpu", ProviderRequested: true}
	f := &editing.Fields{ImageURL: "https://example.com/a.png", Prompt: "x"}
	var fe *registry.FieldError
	if err := sched.Schedule(context.Background(), tk, f); !errors.As(err, &fe) || fe.Field != "reference_image_urls.0" {
		t.Errorf("a task without the reference the template loads: %v", err)
	}
}

// TestCreateWithoutAProvider: on the embedded default (mock and local)
// an editing task naming no executor is a 422 saying what to configure;
// one naming the mock is accepted.
func TestCreateWithoutAProvider(t *testing.T) {
	t.Parallel()
	const key = "editing-test-admin-key-0123456789abcdef"
	srv := testserver.Start(t, testserver.Config(t, "sqlite", key), app.Options{}, nil)
	body := map[string]any{"task_type": "editing", "image_url": "https://example.com/a.png", "prompt": "make the dress red"}
	status, answer := post(t, srv.Base, key, body)
	if status != http.StatusUnprocessableEntity ||
		!strings.Contains(answer, "no configured executor can run editing tasks: configure an executor of type gemini, openai, fal or comfyui (docs/executors.md)") {
		t.Errorf("without a provider: %d %s", status, answer)
	}
	body["provider_type"] = "mock"
	if status, answer := post(t, srv.Base, key, body); status != http.StatusCreated {
		t.Errorf("naming the mock: %d %s", status, answer)
	}
}

func post(t *testing.T, base, key string, body map[string]any) (int, string) {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/tasks/", bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}
