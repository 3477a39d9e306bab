package llminteraction_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/llminteraction"
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
			reg.MustRegister(llminteraction.Type(nil, nil))
			def, _ := reg.Lookup(llminteraction.Name)
			st := testdb.Open(t, dialect, reg)
			ctx := context.Background()

			prompt, system, model, temp, maxTok, seed := "Which colour?", "Be brief.", "gpt-4.1", 0.3, 300, int64(1<<40)
			fields := &llminteraction.Fields{
				Messages: []llminteraction.Message{{Role: "user", Content: "Describe the dress."}, {Role: "assistant", Content: "A linen dress."}},
				Prompt:   &prompt, System: &system, Model: &model, Temperature: &temp, MaxTokens: &maxTok, Seed: &seed,
				ResponseSchema: map[string]any{"type": "object", "properties": map[string]any{"colour": map[string]any{"type": "string"}}},
			}
			now := task.Now()
			tk := &task.Task{
				ID: uuid.New(), Type: llminteraction.Name, Status: task.StatusPending,
				ProviderType: llminteraction.ProviderOpenAI, QueueName: "default", MaxAttempts: 3,
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
			f := recs[0].Fields.(*llminteraction.Fields)
			text, finish := `{"colour":"ecru"}`, "stop"
			f.ResponseText, f.FinishReason = &text, &finish
			f.ResponseJSON = map[string]any{"colour": "ecru"}
			if err := st.SaveFields(ctx, tk.ID, recs[0].Task.Attempt, def, f); err != nil {
				t.Fatalf("saving fields: %v", err)
			}
			if got, err = st.GetTask(ctx, tk.ID, store.AdminScope); err != nil || !reflect.DeepEqual(got.Fields, f) {
				t.Errorf("after SaveFields: %+v (%v), want %+v", got, err, f)
			}
		})
	}
}
