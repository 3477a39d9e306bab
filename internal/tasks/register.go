// Package tasks is the single list of the built-in task types. Each type
// lives in its own folder; adding one is one line in Register.
package tasks

import (
	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/tasks/backgroundfix"
	"github.com/computeserver/compute/internal/tasks/backgroundremove"
	"github.com/computeserver/compute/internal/tasks/detailenhancer"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/tasks/editing"
	"github.com/computeserver/compute/internal/tasks/faceenhancer"
	"github.com/computeserver/compute/internal/tasks/generation"
	"github.com/computeserver/compute/internal/tasks/imageadjuster"
	"github.com/computeserver/compute/internal/tasks/llminteraction"
	"github.com/computeserver/compute/internal/tasks/refine"
	"github.com/computeserver/compute/internal/tasks/training"
	"github.com/computeserver/compute/internal/tasks/videogeneration"
)

// Deps are the shared services task types may need.
type Deps struct {
	// Fetcher opens input URLs (our artifacts or guarded HTTP).
	Fetcher *artifact.Fetcher
	// Executors are the configured executors (nil: mock and local).
	Executors *executor.Set
}

// Register adds every built-in task type to reg.
func Register(reg *registry.Registry, deps Deps) error {
	for _, t := range []registry.Declaration{
		echo.Type(),
		generation.Type(generation.Config{Executors: deps.Executors, Fetcher: deps.Fetcher}),
		imageadjuster.Type(deps.Fetcher, deps.Executors),
		training.Type(training.Config{Executors: deps.Executors, Fetcher: deps.Fetcher}),
		videogeneration.Type(deps.Fetcher, deps.Executors),
		llminteraction.Type(deps.Fetcher, deps.Executors),
		editing.Type(deps.Fetcher, deps.Executors),
		backgroundremove.Type(deps.Fetcher, deps.Executors),
		backgroundfix.Type(deps.Fetcher, deps.Executors),
		faceenhancer.Type(deps.Fetcher, deps.Executors),
		detailenhancer.Type(deps.Fetcher, deps.Executors),
		refine.Type(deps.Fetcher, deps.Executors),
	} {
		if err := reg.Register(t); err != nil {
			return err
		}
	}
	return nil
}
