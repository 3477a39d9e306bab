package conformance_test

import (
	"testing"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/conformance"
)

// TestBuiltinTypes runs the suite over every type tasks.Register adds.
func TestBuiltinTypes(t *testing.T) {
	t.Parallel()
	conformance.Run(t, conformance.Options{})
}

// TestEveryTypeFolderIsRegistered: a folder under internal/tasks that
// declares a type must have its line in register.go.
func TestEveryTypeFolderIsRegistered(t *testing.T) {
	t.Parallel()
	reg, err := app.NewRegistry(app.NewFetcher(config.Default(), nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := conformance.CheckRegistered("../tasks", reg); err != nil {
		t.Error(err)
	}
}
