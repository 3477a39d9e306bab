package detailenhancer_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/local"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/detailenhancer"
	"github.com/computeserver/compute/internal/tasks/imagetask"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

func sample() *detailenhancer.Fields {
	return &detailenhancer.Fields{ImageURL: "https://example.com/a.png", Strength: 0.25, Radius: 2}
}

func TestDeclare(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	if err := reg.Register(detailenhancer.Type(nil, nil)); err != nil {
		t.Fatal(err)
	}
	def, _ := reg.Lookup(detailenhancer.Name)
	if def == nil || def.Table != detailenhancer.Name+"_tasks" || def.DefaultProvider != "local" {
		t.Fatalf("definition %+v", def)
	}
}

// TestStoreRoundTrip checks the migrations against the fields struct on
// both databases.
func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			reg := registry.New()
			reg.MustRegister(detailenhancer.Type(nil, nil))
			def, _ := reg.Lookup(detailenhancer.Name)
			st := testdb.Open(t, dialect, reg)
			ctx := context.Background()
			fields := sample()
			now := task.Now()
			tk := &task.Task{
				ID: uuid.New(), Type: detailenhancer.Name, Status: task.StatusPending, ProviderType: detailenhancer.DefaultProvider,
				QueueName: "default", MaxAttempts: 3, TimeoutSeconds: 300, CreatedAt: now, UpdatedAt: now, RunAt: now,
				Errors: []task.Error{},
			}
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
			f := recs[0].Fields.(*detailenhancer.Fields)
			key := "tasks/" + tk.ID.String() + "/enhanced.png"
			f.ResultImagePath = &key
			if err := st.SaveFields(ctx, tk.ID, recs[0].Task.Attempt, def, f); err != nil {
				t.Fatalf("saving fields: %v", err)
			}
			if got, err = st.GetTask(ctx, tk.ID, store.AdminScope); err != nil || !reflect.DeepEqual(got.Fields, f) {
				t.Errorf("after SaveFields: %+v (%v), want %+v", got.Fields, err, f)
			}
		})
	}
}

// process runs the processor on the local executor with the input data
// stored as the task's image_url.
func process(t *testing.T, input []byte) (*task.Result, *fakeruntime.Runtime, *detailenhancer.Fields, error) {
	t.Helper()
	return processWith(t, input, sample())
}

func processWith(t *testing.T, input []byte, f *detailenhancer.Fields) (*task.Result, *fakeruntime.Runtime, *detailenhancer.Fields, error) {
	t.Helper()
	f.ImageURL = artifact.PathPrefix + "examples/test/input.png"
	job, rt := fakeruntime.NewJob(t, detailenhancer.Name, "local", f)
	if _, err := rt.Store.Put(context.Background(), "examples/test/input.png", "image/png", input); err != nil {
		t.Fatal(err)
	}
	typ := detailenhancer.Type(&artifact.Fetcher{Store: rt.Store}, nil)
	res, err := typ.Processor.Process(context.Background(), job)
	return res, rt, f, err
}

func TestProcessOnLocal(t *testing.T) {
	t.Parallel()
	res, rt, f, err := process(t, imagetask.ExamplePNG())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Artifacts) == 0 || f.ResultImagePath == nil || *f.ResultImagePath != res.Artifacts[0].Key {
		t.Fatalf("result %+v, result_image_path %v", res, f.ResultImagePath)
	}
	if a := res.Artifacts[0]; a.Width == 0 || a.Height == 0 {
		t.Errorf("the image artifact has no size: %+v", a)
	}
	if err := rt.CheckProgress(); err != nil {
		t.Error(err)
	}
}

func TestProcessRefusesWhatIsNotAnImage(t *testing.T) {
	t.Parallel()
	_, _, _, err := process(t, []byte("this is not a picture"))
	var ee *executor.Error
	if !errors.As(err, &ee) || ee.Category != executor.InvalidInput {
		t.Fatalf("err %v, want invalid_input", err)
	}
}

// contrast is the mean absolute difference between horizontal neighbours.
func contrast(img image.Image) float64 {
	var sum float64
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X + 1; x < b.Max.X; x++ {
			r1, g1, b1, _ := img.At(x-1, y).RGBA()
			r2, g2, b2, _ := img.At(x, y).RGBA()
			sum += math.Abs(float64(r1>>8)-float64(r2>>8)) + math.Abs(float64(g1>>8)-float64(g2>>8)) + math.Abs(float64(b1>>8)-float64(b2>>8))
		}
	}
	return sum / float64(b.Dx()*b.Dy())
}

// The unsharp mask raises local contrast, more with strength, and a
// strength of 0 leaves the image as it was.
func TestUnsharpBringsOutDetail(t *testing.T) {
	t.Parallel()
	orig, err := png.Decode(bytes.NewReader(imagetask.ExamplePNG()))
	if err != nil {
		t.Fatal(err)
	}
	base := contrast(orig)
	prev := base
	for _, s := range []float64{0.3, 1} {
		got := contrast(local.Unsharp(orig, 1.5, local.MaxDetailAmount*s))
		if got <= prev {
			t.Errorf("strength %g: contrast %.3f, want more than %.3f", s, got, prev)
		}
		prev = got
	}
	same := local.Unsharp(orig, 1.5, 0)
	if c := contrast(same); c != base {
		t.Errorf("strength 0 changed the image: contrast %.3f, was %.3f", c, base)
	}
	res, rt, f, err := processWith(t, imagetask.ExamplePNG(), &detailenhancer.Fields{Strength: 1, Radius: 1.5})
	if err != nil {
		t.Fatal(err)
	}
	data, err := rt.ReadArtifact(context.Background(), *f.ResultImagePath)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil || img.Bounds() != orig.Bounds() || res.Artifacts[0].Width != 32 {
		t.Fatalf("result %v (%v), artifact %+v", img.Bounds(), err, res.Artifacts[0])
	}
	if c := contrast(img); c <= base {
		t.Errorf("processed: contrast %.3f, want more than %.3f", c, base)
	}
}
