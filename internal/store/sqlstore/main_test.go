package sqlstore_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a goroutine outlives its test: every
// store's background goroutines (group commit, WAL checkpointer, LISTEN)
// must end in Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
