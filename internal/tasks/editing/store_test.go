package editing_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/editing"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestStoreRoundTrip checks the migrations against the fields struct on
// both databases.
func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			reg := registry.New()
			reg.MustRegister(editing.Type(nil, nil))
			def, _ := reg.Lookup(editing.Name)
			st := testdb.Open(t, dialect, reg)
			ctx := context.Background()

			mask, w, h, seed, wf := "https://example.com/mask.png", 1024, 1536, int64(1<<40), "tryon"
			fields := &editing.Fields{
				ImageURL: "https://example.com/model.png", ReferenceImageURLs: []string{"https://example.com/dress.png", "/api/v1/artifacts/tasks/x/belt.png"},
				Prompt: "Dress her in the dress and the belt", MaskURL: &mask, Width: &w, Height: &h, Seed: &seed, ComfyWorkflow: &wf,
			}
			now := task.Now()
			tk := &task.Task{
				ID: uuid.New(), Type: editing.Name, Status: task.StatusPending,
				ProviderType: editing.ProviderGemini, QueueName: "default", MaxAttempts: 3,
				TimeoutSeconds: 300, CreatedAt: now, UpdatedAt: now, RunAt: now, Errors: []task.Error{},
			}
			if _, _, err := st.CreateTask(ctx, &store.Record{Task: tk, Fields: fields, Def: def}); err != nil {
				t.Fatalf("creating: %v", err)
			}
			got, err := st.GetTask(ctx, tk.ID, store.AdminScope)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Fields, fields) {
				t.Errorf("round trip\n got %+v\nwant %+v", got.Fields, fields)
			}

			recs, err := st.ClaimTasks(ctx, store.ClaimParams{Worker: "test", Limit: 1, Lease: time.Minute})
			if err != nil || len(recs) != 1 {
				t.Fatalf("claiming: %d records, %v", len(recs), err)
			}
			f := recs[0].Fields.(*editing.Fields)
			key := "tasks/" + tk.ID.String() + "/output-0.png"
			f.ResultImagePath = &key
			if err := st.SaveFields(ctx, tk.ID, recs[0].Task.Attempt, def, f); err != nil {
				t.Fatalf("saving fields: %v", err)
			}
			if got, err = st.GetTask(ctx, tk.ID, store.AdminScope); err != nil || !reflect.DeepEqual(got.Fields, f) {
				t.Errorf("after SaveFields: %+v (%v), want %+v", got, err, f)
			}
		})
	}
}
