package refine_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
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
	"github.com/computeserver/compute/internal/tasks/imagetask"
	"github.com/computeserver/compute/internal/tasks/refine"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

func sample() *refine.Fields {
	return &refine.Fields{ImageURL: "https://example.com/a.png", UpscaleFactor: 2.5, Strength: 0.75}
}

func TestDeclare(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	if err := reg.Register(refine.Type(nil, nil)); err != nil {
		t.Fatal(err)
	}
	def, _ := reg.Lookup(refine.Name)
	if def == nil || def.Table != refine.Name+"_tasks" || def.DefaultProvider != "models-tf" {
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
			reg.MustRegister(refine.Type(nil, nil))
			def, _ := reg.Lookup(refine.Name)
			st := testdb.Open(t, dialect, reg)
			ctx := context.Background()
			fields := sample()
			now := task.Now()
			tk := &task.Task{
				ID: uuid.New(), Type: refine.Name, Status: task.StatusPending, ProviderType: refine.DefaultProvider,
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
			f := recs[0].Fields.(*refine.Fields)
			key := "tasks/" + tk.ID.String() + "/upscaled.png"
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

// process runs the processor on the mock (a placeholder image) with the
// input data stored as the task's image_url.
func process(t *testing.T, input []byte) (*task.Result, *fakeruntime.Runtime, *refine.Fields, error) {
	t.Helper()
	f := sample()
	f.ImageURL = artifact.PathPrefix + "examples/test/input.png"
	job, rt := fakeruntime.NewJob(t, refine.Name, "mock", f)
	if _, err := rt.Store.Put(context.Background(), "examples/test/input.png", "image/png", input); err != nil {
		t.Fatal(err)
	}
	typ := refine.Type(&artifact.Fetcher{Store: rt.Store}, nil)
	res, err := typ.Processor.Process(context.Background(), job)
	return res, rt, f, err
}

func TestProcessOnTheMock(t *testing.T) {
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

// pngHeader is a PNG's signature and IHDR claiming width×height, with no
// pixels: enough for the size checks, which read only the header.
func pngHeader(width, height uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], width)
	binary.BigEndian.PutUint32(ihdr[4:], height)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	_ = binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	_ = binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

// A result over MaxOutputPixels is refused before any executor runs.
func TestResultTooLarge(t *testing.T) {
	t.Parallel()
	_, rt, _, err := process(t, pngHeader(2100, 2100))
	var ee *executor.Error
	if !errors.As(err, &ee) || ee.Category != executor.InvalidInput || !strings.Contains(err.Error(), "5250x5250") {
		t.Fatalf("err %v, want invalid_input naming the result's size", err)
	}
	if n := len(rt.Artifacts()); n != 0 {
		t.Errorf("%d artifacts stored", n)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		change func(f *refine.Fields)
		field  string
	}{
		{func(f *refine.Fields) { f.UpscaleFactor = 0.5 }, "upscale_factor"},
		{func(f *refine.Fields) { f.UpscaleFactor = 4.5 }, "upscale_factor"},
		{func(f *refine.Fields) { f.Strength = 1.5 }, "strength"},
		{func(f *refine.Fields) { f.ImageURL = "file:///etc/passwd" }, "image_url"},
	} {
		f := sample()
		tt.change(f)
		var fe *registry.FieldError
		if err := f.Validate(); !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%+v: %v, want an error on %s", f, err, tt.field)
		}
	}
	if err := sample().Validate(); err != nil {
		t.Errorf("sample: %v", err)
	}
}
