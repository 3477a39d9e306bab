package backgroundfix_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/backgroundfix"
	"github.com/computeserver/compute/internal/tasks/imagetask"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

func ptr[T any](v T) *T { return &v }

func TestValidate(t *testing.T) {
	t.Parallel()
	base := func() *backgroundfix.Fields {
		return &backgroundfix.Fields{ImageURL: "https://example.com/a.png", BackgroundColor: ptr("#00ff7f"), OutputFormat: "png"}
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("valid: %v", err)
	}
	for _, tt := range []struct {
		name   string
		change func(f *backgroundfix.Fields)
		field  string
	}{
		{"no background", func(f *backgroundfix.Fields) { f.BackgroundColor = nil }, "background_color"},
		{"two backgrounds", func(f *backgroundfix.Fields) { f.BackgroundPrompt = ptr("a beach") }, "background_color"},
		{"bad colour", func(f *backgroundfix.Fields) { f.BackgroundColor = ptr("red") }, "background_color"},
		{"bad background URL", func(f *backgroundfix.Fields) {
			f.BackgroundColor, f.BackgroundImageURL = nil, ptr("ftp://x/y.png")
		}, "background_image_url"},
		{"empty prompt", func(f *backgroundfix.Fields) { f.BackgroundColor, f.BackgroundPrompt = nil, ptr("") }, "background_prompt"},
		{"format", func(f *backgroundfix.Fields) { f.OutputFormat = "gif" }, "output_format"},
	} {
		f := base()
		tt.change(f)
		var fe *registry.FieldError
		if err := f.Validate(); !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%s: %v, want an error on %s", tt.name, err, tt.field)
		}
	}
}

func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			reg := registry.New()
			reg.MustRegister(backgroundfix.Type(nil, nil))
			def, _ := reg.Lookup(backgroundfix.Name)
			st := testdb.Open(t, dialect, reg)
			ctx := context.Background()
			fields := &backgroundfix.Fields{ImageURL: "https://example.com/a.png", BackgroundImageURL: ptr("https://example.com/b.jpg"),
				IsCutout: true, OutputFormat: "jpeg"}
			now := task.Now()
			tk := &task.Task{ID: uuid.New(), Type: backgroundfix.Name, Status: task.StatusPending, ProviderType: "mock",
				QueueName: "default", MaxAttempts: 3, TimeoutSeconds: 300, CreatedAt: now, UpdatedAt: now, RunAt: now, Errors: []task.Error{}}
			if _, _, err := st.CreateTask(ctx, &store.Record{Task: tk, Fields: fields, Def: def}); err != nil {
				t.Fatalf("creating: %v", err)
			}
			got, err := st.GetTask(ctx, tk.ID, store.AdminScope)
			if err != nil || !reflect.DeepEqual(got.Fields, fields) {
				t.Fatalf("round trip %v\n got %+v\nwant %+v", err, got.Fields, fields)
			}
			recs, err := st.ClaimTasks(ctx, store.ClaimParams{Worker: "test", Limit: 1, Lease: time.Minute})
			if err != nil || len(recs) != 1 {
				t.Fatalf("claiming: %d records, %v", len(recs), err)
			}
			f := recs[0].Fields.(*backgroundfix.Fields)
			f.CutoutImagePath, f.BackgroundImagePath, f.ResultImagePath = ptr("tasks/x/cutout.png"), ptr("tasks/x/image.png"), ptr("tasks/x/result.jpg")
			if err := st.SaveFields(ctx, tk.ID, recs[0].Task.Attempt, def, f); err != nil {
				t.Fatalf("saving fields: %v", err)
			}
			if got, err = st.GetTask(ctx, tk.ID, store.AdminScope); err != nil || !reflect.DeepEqual(got.Fields, f) {
				t.Errorf("after SaveFields: %+v (%v), want %+v", got.Fields, err, f)
			}
		})
	}
}

// run processes f, whose image_url and background_image_url name the
// inputs stored first (input.png and background.png).
func run(t *testing.T, f *backgroundfix.Fields, provider string, inputs map[string][]byte) (*task.Result, *fakeruntime.Runtime, error) {
	t.Helper()
	job, rt := fakeruntime.NewJob(t, backgroundfix.Name, provider, f)
	for name, data := range inputs {
		if _, err := rt.Store.Put(context.Background(), "examples/test/"+name, "image/png", data); err != nil {
			t.Fatal(err)
		}
	}
	res, err := backgroundfix.Type(&artifact.Fetcher{Store: rt.Store}, nil).Processor.Process(context.Background(), job)
	return res, rt, err
}

func decode(t *testing.T, rt *fakeruntime.Runtime, key string) image.Image {
	t.Helper()
	data, err := rt.ReadArtifact(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func near(a, b color.Color) bool {
	r1, g1, b1, a1 := a.RGBA()
	r2, g2, b2, a2 := b.RGBA()
	d := func(x, y uint32) bool { return x>>8 <= y>>8+2 && y>>8 <= x>>8+2 }
	return d(r1, r2) && d(g1, g2) && d(b1, b2) && d(a1, a2)
}

// A cut-out on a colour: the subject's pixels stay, the transparent ones
// become the colour, and the result is opaque.
func TestCutoutOnAColour(t *testing.T) {
	t.Parallel()
	f := &backgroundfix.Fields{ImageURL: artifact.PathPrefix + "examples/test/input.png", BackgroundColor: ptr("#10e080"),
		IsCutout: true, OutputFormat: "png"}
	res, rt, err := run(t, f, "mock", map[string][]byte{"input.png": imagetask.ExampleCutoutPNG()})
	if err != nil {
		t.Fatal(err)
	}
	if f.ResultImagePath == nil || len(res.Artifacts) != 1 || res.Artifacts[0].Width != 32 || f.CutoutImagePath != nil {
		t.Fatalf("result %+v, fields %+v", res, f)
	}
	got := decode(t, rt, *f.ResultImagePath)
	cut, _ := png.Decode(bytes.NewReader(imagetask.ExampleCutoutPNG()))
	if c := got.At(0, 0); !near(c, color.NRGBA{0x10, 0xe0, 0x80, 255}) {
		t.Errorf("background pixel %v, want the colour", c)
	}
	if c, want := got.At(16, 12), cut.At(16, 12); !near(c, want) {
		t.Errorf("subject pixel %v, want %v", c, want)
	}
}

// A background image covers the frame (scaled and cropped), under the
// cut-out.
func TestCutoutOnAnImage(t *testing.T) {
	t.Parallel()
	bg := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	for i := range bg.Pix {
		bg.Pix[i] = 0xff
	}
	for i := 0; i < len(bg.Pix); i += 4 {
		bg.Pix[i] = 0x30 // a cyan-ish plain picture
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, bg); err != nil {
		t.Fatal(err)
	}
	f := &backgroundfix.Fields{ImageURL: artifact.PathPrefix + "examples/test/input.png",
		BackgroundImageURL: ptr(artifact.PathPrefix + "examples/test/background.png"), IsCutout: true, OutputFormat: "png"}
	_, rt, err := run(t, f, "mock", map[string][]byte{"input.png": imagetask.ExampleCutoutPNG(), "background.png": buf.Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, rt, *f.ResultImagePath)
	if got.Bounds().Dx() != 32 || got.Bounds().Dy() != 24 {
		t.Fatalf("size %v, want the input's 32×24", got.Bounds())
	}
	if c := got.At(31, 23); !near(c, color.NRGBA{0x30, 0xff, 0xff, 255}) {
		t.Errorf("corner %v, want the background image's colour", c)
	}
}

// Without is_cutout the task's executor makes the cut-out (the mock: a
// placeholder picture), and a prompt's background is drawn by the
// executor generation tasks run on (the mock): the result, the cut-out and
// the background are artifacts.
func TestCutoutAndPromptOnTheMock(t *testing.T) {
	t.Parallel()
	f := &backgroundfix.Fields{ImageURL: artifact.PathPrefix + "examples/test/input.png", BackgroundPrompt: ptr("a sunny beach"), OutputFormat: "jpeg"}
	res, _, err := run(t, f, "mock", map[string][]byte{"input.png": imagetask.ExamplePNG()})
	if err != nil {
		t.Fatal(err)
	}
	if f.CutoutImagePath == nil || f.BackgroundImagePath == nil || f.ResultImagePath == nil || len(res.Artifacts) != 3 {
		t.Fatalf("fields %+v, artifacts %+v", f, res.Artifacts)
	}
	if a := res.Artifacts[0]; a.ContentType != "image/jpeg" || !strings.HasSuffix(a.Key, "result.jpg") {
		t.Errorf("result artifact %+v", a)
	}
	if d := res.Data.(backgroundfix.Output); d.Background != "prompt" || d.Format != "jpeg" {
		t.Errorf("data %+v", d)
	}
}

func TestNotAnImage(t *testing.T) {
	t.Parallel()
	f := &backgroundfix.Fields{ImageURL: artifact.PathPrefix + "examples/test/input.png", BackgroundColor: ptr("#000000"), OutputFormat: "png"}
	_, _, err := run(t, f, "mock", map[string][]byte{"input.png": []byte("text")})
	var ee *executor.Error
	if !errors.As(err, &ee) || ee.Category != executor.InvalidInput {
		t.Fatalf("err %v, want invalid_input", err)
	}
}
