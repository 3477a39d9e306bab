//go:build unix

package queue_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/queue"
)

// TestAcquireIdentity gives two live holders of one directory different
// names, and a later holder the name a released slot had.
func TestAcquireIdentity(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "instances")
	acquire := func() *queue.Identity {
		t.Helper()
		id, err := queue.AcquireIdentity(dir)
		if err != nil {
			t.Fatalf("AcquireIdentity: %v", err)
		}
		t.Cleanup(func() { id.Close() })
		return id
	}
	a, b := acquire(), acquire()
	if a.Name == "" || a.Name == b.Name {
		t.Fatalf("two live identities are named %q and %q", a.Name, b.Name)
	}
	stored, err := os.ReadFile(filepath.Join(dir, "slot-0.id"))
	if err != nil || strings.TrimSpace(string(stored)) != a.Name {
		t.Errorf("slot 0 holds %q (%v), want %q", stored, err, a.Name)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	c := acquire()
	if c.Name != a.Name {
		t.Errorf("after the first holder left, a new one is named %q, want its name %q", c.Name, a.Name)
	}
	if d := acquire(); d.Name == b.Name || d.Name == c.Name {
		t.Errorf("a third live identity is named %q, like another live one", d.Name)
	}
}
