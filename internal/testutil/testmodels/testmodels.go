// Package testmodels finds the local models `make models` installed for
// this checkout, for the tests that run them (docs/local-models.md).
package testmodels

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/computeserver/compute/internal/executors"
)

// Dir is where `make models` installs the models for this checkout:
// $COMPUTE_DATA_DIR/models (relative to the repository root when
// relative), else ./data/models under the repository root.
func Dir(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("testmodels: cannot locate the repository")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	data := os.Getenv("COMPUTE_DATA_DIR")
	switch {
	case data == "":
		data = filepath.Join(root, "data")
	case !filepath.IsAbs(data):
		data = filepath.Join(root, data)
	}
	return executors.ModelsDir(data)
}

// Require returns Dir when the models are installed there and node is on
// the PATH; otherwise it skips the test with a message naming `make
// models`, or fails it when CI=true (.ci/run installs them).
func Require(tb testing.TB) string {
	tb.Helper()
	dir := Dir(tb)
	_, nodeErr := exec.LookPath("node")
	if !executors.ModelsInstalled(dir) || nodeErr != nil {
		msg := "the local models are not installed in " + dir + " (or node is not on PATH): run `make models` to test them"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg + " (CI=true: .ci/run installs them)")
		}
		tb.Skip(msg)
	}
	return dir
}

// Link makes the models of Require available in dataDir (as
// dataDir/models, a symbolic link), so that a server with that data
// directory builds their executors; it skips or fails as Require does.
func Link(tb testing.TB, dataDir string) {
	tb.Helper()
	dir := Require(tb)
	if err := os.Symlink(dir, executors.ModelsDir(dataDir)); err != nil {
		tb.Fatal(err)
	}
}
