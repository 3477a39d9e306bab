package sqlstore_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/webhook"
)

// TestDefaultWebhookURL checks that a store told to send to a default URL
// (webhook.Targeting) writes the deliveries of tasks that name no
// webhook_url to it, and only theirs, with their destinations.
func TestDefaultWebhookURL(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			reg := registry.New()
			reg.MustRegister(echo.Type())
			ctx := context.Background()
			s, err := sqlstore.Open(ctx, testdb.URL(t, dialect), reg, testdb.Logger(t), sqlstore.WithWebhookTargets(webhook.Targeting{DefaultURL: "https://default.example/hook"}.Targets))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			def, _ := reg.Lookup(echo.Name)
			create := func(url string) uuid.UUID {
				now := task.Now()
				tk := &task.Task{
					ID: uuid.Must(uuid.NewV7()), Type: echo.Name, Status: task.StatusPending, ProviderType: def.DefaultProvider,
					QueueName: def.DefaultQueue, CreatedAt: now, UpdatedAt: now, RunAt: now, MaxAttempts: 1,
					TimeoutSeconds: 60, Errors: []task.Error{}, WebhookURL: url,
				}
				if _, _, err := s.CreateTask(ctx, &store.Record{Task: tk, Fields: &echo.Fields{Message: "hi"}, Def: def}); err != nil {
					t.Fatalf("CreateTask: %v", err)
				}
				return tk.ID
			}
			dests := map[string]string{"https://default.example/hook": "https://default.example:443", "https://own.example/x": "https://own.example:443"}
			for url, want := range map[string]string{"": "https://default.example/hook", "https://own.example/x": "https://own.example/x"} {
				id := create(url)
				ds, err := s.ListDeliveries(ctx, id, store.AdminScope)
				if err != nil {
					t.Fatal(err)
				}
				if len(ds) != 1 || ds[0].URL != want || ds[0].Destination != dests[want] {
					t.Errorf("task with webhook_url %q: deliveries %+v, want one to %s (destination %s)", url, ds, want, dests[want])
				}
			}
		})
	}
}
