package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/webhook"
)

// BenchmarkClaimDeliveries claims 8 deliveries (2 per destination) among
// 8 destinations with one due delivery each, beside a backlog of due
// deliveries for one more destination: 0, then 20,000. The claim walks
// destinations, not deliveries, so the ratio of the two should stay near
// 1 (compare the two sub-benchmarks of the same run). Each claim has a
// zero lease, so what it claims is due again at once and every iteration
// sees the same rows.
func BenchmarkClaimDeliveries(b *testing.B) {
	for _, dialect := range testdb.Dialects {
		for _, backlog := range []int{0, 20000} {
			b.Run(fmt.Sprintf("%s/backlog=%d", dialect, backlog), func(b *testing.B) {
				reg := registry.New()
				reg.MustRegister(echo.Type())
				dsn := testdb.URL(b, dialect)
				s, err := sqlstore.Open(context.Background(), dsn, reg, testdb.Logger(b), sqlstore.WithWebhookTargets(webhook.Targeting{}.Targets))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				if err := s.Migrate(context.Background()); err != nil {
					b.Fatal(err)
				}
				def, _ := reg.Lookup(echo.Name)
				ctx := context.Background()
				hooks := func(url string, n int) {
					for start := 0; start < n; start += 500 {
						var recs []*store.Record
						for range min(500, n-start) {
							now := task.Now()
							recs = append(recs, &store.Record{Def: def, Fields: &echo.Fields{Message: "hi"}, Task: &task.Task{
								ID: uuid.Must(uuid.NewV7()), Type: echo.Name, Status: task.StatusPending, ProviderType: def.DefaultProvider,
								QueueName: "bench", CreatedAt: now, UpdatedAt: now, RunAt: now.Add(time.Hour), MaxAttempts: 1,
								TimeoutSeconds: 60, Errors: []task.Error{}, WebhookURL: url, WebhookEvents: []string{"pending"},
							}})
						}
						if err := s.CreateTasks(ctx, recs); err != nil {
							b.Fatal(err)
						}
					}
				}
				hooks("https://backlog.example/hook", backlog)
				for i := range 8 {
					hooks(fmt.Sprintf("https://h%d.example/hook", i), 1)
				}
				// Planner statistics as autovacuum would have them for a
				// table this size.
				if err := analyze(dsn); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for b.Loop() {
					ds, err := s.ClaimDeliveries(ctx, store.DeliveryClaim{Limit: 8, PerDestination: 2})
					if err != nil || len(ds) != 8 {
						b.Fatalf("claim = %d deliveries, %v", len(ds), err)
					}
				}
			})
		}
	}
}

// analyze updates the planner statistics of the database at dsn.
func analyze(dsn string) error {
	driver := "sqlite"
	if sqlstore.IsPostgresURL(dsn) {
		driver = "pgx"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec(`ANALYZE`)
	return err
}
