package generation_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/generation"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestStoreRoundTrip checks the migrations against the fields struct on
// both databases: every column exists with a type that round-trips, NULL
// for absent optional fields, JSON for lists.
func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			reg := registry.New()
			reg.MustRegister(generation.Type(generation.Config{}))
			def, _ := reg.Lookup(generation.Name)
			st := testdb.Open(t, dialect, reg)
			ctx := context.Background()

			sparse := valid()
			full := valid()
			full.NegativePrompt = ptr("blurry")
			full.Seed = ptr(int64(generation.MaxSeed))
			full.GuidanceScale = 0
			full.SubjectModelPath, full.SubjectLoraWeight = ptr("s3://loras/subject.safetensors"), 0.25
			full.ProductModelPath, full.ProductLoraWeight = ptr("p.safetensors"), 0
			full.StyleModelPath, full.StyleLoraWeight = ptr("st.safetensors"), 0.75
			full.Product2ModelPath, full.Product2LoraWeight = ptr("p2.safetensors"), 1
			full.ReferenceImageURL, full.ReferenceImageStrength = ptr("https://example.com/ref.png"), 0.3
			full.BackendGenerationID = ptr("gen-1")
			full.BackendPredictionID = ptr("pred-1")
			full.WorkflowID = ptr("wf-1")
			full.ComfyPromptID = ptr("prompt-1")
			full.ComfyServerURL = ptr("http://gpu-1:8188")
			full.ComfyUIRetryServerURLs = []string{"http://gpu-2:8188", "http://gpu-3:8188"}
			full.ResultImagePath = ptr("tasks/x/image.png")
			full.ComfyWorkflow = ptr("flux_txt2img")
			full.ComfyWorkflowData = map[string]any{"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": float64(64)}}}

			for name, fields := range map[string]*generation.Fields{"sparse": sparse, "full": full} {
				rec := &store.Record{Task: newTask(), Fields: fields, Def: def}
				if _, _, err := st.CreateTask(ctx, rec); err != nil {
					t.Fatalf("%s: creating: %v", name, err)
				}
				got, err := st.GetTask(ctx, rec.Task.ID, store.AdminScope)
				if err != nil {
					t.Fatalf("%s: loading: %v", name, err)
				}
				if !reflect.DeepEqual(got.Fields, fields) {
					t.Errorf("%s: round trip\n got %+v\nwant %+v", name, got.Fields, fields)
				}
			}

			// The processor's writes: claim the sparse task, save outputs.
			recs, err := st.ClaimTasks(ctx, store.ClaimParams{Worker: "test", Limit: 10, Lease: time.Minute})
			if err != nil || len(recs) == 0 {
				t.Fatalf("claiming: %d records, %v", len(recs), err)
			}
			rec := recs[0]
			f := rec.Fields.(*generation.Fields)
			f.Seed = ptr(int64(99))
			f.ResultImagePath = ptr("tasks/" + rec.Task.ID.String() + "/image.png")
			f.ComfyUIRetryServerURLs = []string{"http://gpu-9:8188"}
			if err := st.SaveFields(ctx, rec.Task.ID, rec.Task.Attempt, def, f); err != nil {
				t.Fatalf("saving fields: %v", err)
			}
			got, err := st.GetTask(ctx, rec.Task.ID, store.AdminScope)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Fields, f) {
				t.Errorf("after SaveFields\n got %+v\nwant %+v", got.Fields, f)
			}
		})
	}
}

func newTask() *task.Task {
	now := task.Now()
	return &task.Task{
		ID:             uuid.New(),
		Type:           generation.Name,
		Status:         task.StatusPending,
		ProviderType:   generation.ProviderMock,
		QueueName:      "default",
		MaxAttempts:    3,
		TimeoutSeconds: 600,
		CreatedAt:      now,
		UpdatedAt:      now,
		RunAt:          now,
		Errors:         []task.Error{},
	}
}
