package sqlstore_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestCheckpointerBoundsTheWAL checks that SQLite's WAL, whose automatic
// checkpoints are off in the writer, is still checkpointed: under a steady
// write load it is reused from its start instead of growing with every
// page ever written.
func TestCheckpointerBoundsTheWAL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	reg := registry.New()
	reg.MustRegister(echo.Type())
	path := t.TempDir() + "/wal.db"
	s, err := sqlstore.Open(ctx, path, reg, testdb.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	def, _ := reg.Lookup(echo.Name)
	const batches, size = 20, 200
	maxWAL := int64(0)
	for b := range batches {
		recs := make([]*store.Record, size)
		for i := range recs {
			now := task.Now()
			recs[i] = &store.Record{Def: def, Fields: &echo.Fields{Message: fmt.Sprintf("message %d of batch %d, long enough to fill pages", i, b)},
				Task: &task.Task{ID: uuid.Must(uuid.NewV7()), Type: echo.Name, Status: task.StatusPending,
					ProviderType: def.DefaultProvider, QueueName: def.DefaultQueue, CreatedAt: now, UpdatedAt: now, RunAt: now,
					MaxAttempts: 1, TimeoutSeconds: 60, Errors: []task.Error{}}}
		}
		if err := s.CreateTasks(ctx, recs); err != nil {
			t.Fatal(err)
		}
		// Longer than the checkpointer's interval (100 ms), so that every
		// batch can be followed by a checkpoint on a loaded machine too.
		time.Sleep(150 * time.Millisecond)
		if fi, err := os.Stat(path + "-wal"); err == nil {
			maxWAL = max(maxWAL, fi.Size())
		}
	}
	time.Sleep(300 * time.Millisecond) // the checkpoint after the last commit
	db, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("database file %d bytes, largest WAL seen %d bytes", db.Size(), maxWAL)
	// Everything written goes through the WAL. Without checkpoints the
	// database file keeps the size the migrations left (4 kB) and the WAL
	// holds all of it (8.3 MB for this load when measured); with them the
	// data reaches the file and the WAL is reused from its start.
	if db.Size() < 1<<20 {
		t.Errorf("the database file is %d bytes after the load: the WAL is not being checkpointed", db.Size())
	}
	if maxWAL >= 6<<20 {
		t.Errorf("the WAL reached %d bytes: it is not being reused", maxWAL)
	}
}
