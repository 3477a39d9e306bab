package sqlstore

import (
	"testing"
	"testing/fstest"
)

// TestFlatFS checks the in-memory migration folder with the standard
// library's file system checker.
func TestFlatFS(t *testing.T) {
	t.Parallel()
	fsys := flatFS{"1_a.sql": []byte("-- +goose Up\nSELECT 1;\n"), "2_b.sql": []byte("x")}
	if err := fstest.TestFS(fsys, "1_a.sql", "2_b.sql"); err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(flatFS{}); err != nil {
		t.Fatal(err)
	}
}
