package faceenhancer_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/faceenhancer"
	"github.com/computeserver/compute/internal/tasks/imagetask"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

func sample() *faceenhancer.Fields {
	return &faceenhancer.Fields{ImageURL: "https://example.com/a.png", Strength: 0.6, MinConfidence: 0.4}
}

func TestDeclare(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	if err := reg.Register(faceenhancer.Type(nil, nil)); err != nil {
		t.Fatal(err)
	}
	def, _ := reg.Lookup(faceenhancer.Name)
	if def == nil || def.Table != faceenhancer.Name+"_tasks" || def.DefaultProvider != "models-tf" {
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
			reg.MustRegister(faceenhancer.Type(nil, nil))
			def, _ := reg.Lookup(faceenhancer.Name)
			st := testdb.Open(t, dialect, reg)
			ctx := context.Background()
			fields := sample()
			now := task.Now()
			tk := &task.Task{
				ID: uuid.New(), Type: faceenhancer.Name, Status: task.StatusPending, ProviderType: faceenhancer.DefaultProvider,
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
			f := recs[0].Fields.(*faceenhancer.Fields)
			key, n := "tasks/"+tk.ID.String()+"/enhanced.png", 2
			f.ResultImagePath, f.FacesFound = &key, &n
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
func process(t *testing.T, input []byte) (*task.Result, *fakeruntime.Runtime, *faceenhancer.Fields, error) {
	t.Helper()
	f := sample()
	f.ImageURL = artifact.PathPrefix + "examples/test/input.png"
	job, rt := fakeruntime.NewJob(t, faceenhancer.Name, "mock", f)
	if _, err := rt.Store.Put(context.Background(), "examples/test/input.png", "image/png", input); err != nil {
		t.Fatal(err)
	}
	typ := faceenhancer.Type(&artifact.Fetcher{Store: rt.Store}, nil)
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
