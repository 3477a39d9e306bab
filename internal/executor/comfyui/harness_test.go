package comfyui_test

import (
	"testing"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/comfyui"
	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
	"github.com/computeserver/compute/internal/executor/executortest"
)

// TestHarness runs the executor harness on the ComfyUI executor against
// one fake server with two slots (one prompt running, one queued). Each
// New is a new worker process over the same server. A held job pauses the
// fake's worker until its gate is released; provider_error is an
// out-of-memory node (the fake's ImageInvert), invalid_input a value
// ComfyUI's validation refuses, provider_unavailable a server answering
// 503.
func TestHarness(t *testing.T) {
	t.Parallel()
	base := comfyfake.Faults{FailClass: "ImageInvert", FailOOM: true}
	fake := comfyfake.StartT(t, comfyfake.Options{Steps: 3, StepClass: "SaveImage", Faults: base})
	settings := fast(fake.URL())
	settings.Servers[0].Slots = 2
	executortest.Run(t, executortest.Adapter{
		New: func(t *testing.T) executor.Executor { return newExecutor(t, settings, comfyui.Options{}) },
		Job: func(t *testing.T, b executortest.Behaviour) *executor.Job {
			fields := map[string]any{}
			switch b.Fail {
			case executor.ProviderError:
				fields["comfy_workflow"] = "invert"
			case executor.InvalidInput:
				fields["width"] = 0 // EmptyImage's minimum is 1: value_smaller_than_min
			case executor.ProviderUnavailable:
				if err := fake.SetFaults(comfyfake.Faults{HTTPStatus: 503, FailClass: base.FailClass, FailOOM: base.FailOOM}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = fake.SetFaults(base) })
			}
			if g := b.Hold; g != nil {
				hold(t, fake, g)
			}
			j, _ := newJob(t, fields)
			j.Put, j.SaveHandle = nil, nil // the harness records them
			return j
		},
		Failures:        []executor.Category{executor.ProviderUnavailable, executor.ProviderError, executor.InvalidInput},
		CanQueue:        true,
		SurvivesRestart: true,
		Submissions:     func() int { return submissions(fake) },
		SetAvailable: func(t *testing.T, up bool) {
			if !up {
				fake.Kill()
				return
			}
			if err := fake.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// hold pauses the fake so the next prompt to start stays running: gate
// learns when it runs, and its release resumes the fake.
func hold(t *testing.T, fake *comfyfake.Server, gate *executortest.Gate) {
	started := len(fake.Stats().Started)
	fake.Pause()
	t.Cleanup(fake.Resume)
	go func() {
		c := t.Context()
		if fake.Wait(c, func(s comfyfake.Stats) bool { return len(s.Started) > started }) != nil {
			return
		}
		gate.Running()
		if gate.Wait(c) == nil {
			fake.Resume()
		}
	}()
}
