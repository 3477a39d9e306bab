package executor

import (
	"context"
	"fmt"
	"strings"
)

// failsOver reports whether err lets a fallback executor take over: the
// executor could not be reached, or did not start the job in time.
func failsOver(err error) bool { return Is(err, ProviderUnavailable) || Is(err, StartTimeout) }

// Chain returns the executors a task of type typeName runs on, in order:
// the one named name, then, when the client did not name it (requested is
// false) and it is the type's routed executor, the route's fallbacks. An
// executor this process has not configured is a permanent error.
func (s *Set) Chain(typeName, name string, requested bool) ([]Executor, error) {
	first, err := s.For(name)
	if err != nil {
		return nil, err
	}
	chain := []Executor{first}
	if r, ok := s.routes[typeName]; ok && !requested && r.Executor == name {
		for _, n := range r.Fallback {
			ex, err := s.For(n)
			if err != nil {
				return nil, err
			}
			chain = append(chain, ex)
		}
	}
	return chain, nil
}

// Run runs job (of task type job.Type) on the executor named name, failing
// over to the type's fallbacks (see Chain) when it fails with
// ProviderUnavailable or StartTimeout. A recovered run resumes on the
// executor its saved handle names, when that one is in the chain. A job
// starts only within its executor's start rate, and a 429 pauses the
// executor (see Gate); either defers the task (*task.DeferError). A
// Batchable job of an executor configured to batch joins a batch of
// compatible jobs (see Batcher), which takes one start of the rate. The
// error of the last executor tried is returned, naming the failures
// before it.
func (s *Set) Run(ctx context.Context, name string, requested bool, job *Job, r Reporter) (*Output, error) {
	chain, err := s.Chain(job.Type, name, requested)
	if err != nil {
		return nil, err
	}
	if job.Saved != nil {
		for i, ex := range chain {
			if ex.Name() == job.Saved.Executor {
				chain = chain[i:]
				break
			}
		}
	}
	var earlier []string
	for i, ex := range chain {
		job.admit = func(ctx context.Context) error { return s.admit(ctx, ex.Name()) }
		job.batch = nil
		if cfg := s.limits[ex.Name()].Batch; cfg.MaxSize > 1 {
			job.batch = func(ctx context.Context) (Handle, error) {
				return s.batches.join(ctx, ex, cfg, job, job.admit)
			}
		}
		out, err := Execute(ctx, ex, job, r)
		err = s.pauseOn(ctx, ex.Name(), err)
		if err == nil || i == len(chain)-1 || !failsOver(err) || ctx.Err() != nil {
			if err != nil && len(earlier) > 0 {
				err = fmt.Errorf("%w; before it, %s", err, strings.Join(earlier, "; "))
			}
			return out, err
		}
		earlier = append(earlier, err.Error())
		job.Saved = nil // the next executor starts the job afresh
	}
	return nil, fmt.Errorf("no executor ran the job") // unreachable: the chain is never empty
}
