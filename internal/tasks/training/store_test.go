package training_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/training"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestStoreRoundTrip checks the migrations against the fields struct on
// both databases, booleans both ways and the outputs included.
func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			reg := registry.New()
			reg.MustRegister(training.Type(training.Config{}))
			def, _ := reg.Lookup(training.Name)
			st := testdb.Open(t, dialect, reg)
			ctx := context.Background()

			fields := &training.Fields{
				ImagesDataURL: "https://example.com/set.zip", Steps: 1500, TriggerWord: ptr("TOK"),
				CreateMasks: false, IsStyle: true, IsInputFormatAlreadyPreprocessed: true,
			}
			now := task.Now()
			tk := &task.Task{
				ID: uuid.New(), Type: training.Name, Status: task.StatusPending,
				ProviderType: training.ProviderMock, QueueName: "default", MaxAttempts: 3,
				TimeoutSeconds: 7200, CreatedAt: now, UpdatedAt: now, RunAt: now, Errors: []task.Error{},
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
			f := recs[0].Fields.(*training.Fields)
			key := "tasks/" + tk.ID.String() + "/pytorch_lora_weights.safetensors"
			url, cfg := "/api/v1/artifacts/"+key, "/api/v1/artifacts/tasks/"+tk.ID.String()+"/config.json"
			f.WeightsPath, f.WeightsURL, f.ConfigURL, f.CreateMasks = &key, &url, &cfg, true
			if err := st.SaveFields(ctx, tk.ID, recs[0].Task.Attempt, def, f); err != nil {
				t.Fatalf("saving fields: %v", err)
			}
			if got, err = st.GetTask(ctx, tk.ID, store.AdminScope); err != nil || !reflect.DeepEqual(got.Fields, f) {
				t.Errorf("after SaveFields: %+v (%v), want %+v", got.Fields, err, f)
			}
		})
	}
}
