package comfyui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/comfyui"
	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
	"github.com/computeserver/compute/internal/task"
)

// fast are settings that make the executor notice things quickly in tests.
func fast(urls ...string) comfyui.Settings {
	s := comfyui.Settings{
		Workflows: "testdata/workflows", PollInterval: "50ms", ProbeInterval: "500ms",
		DownAfter: "300ms", LostAfter: "500ms", RequestTimeout: "5s",
	}
	for _, u := range urls {
		s.Servers = append(s.Servers, comfyui.ServerSettings{URL: u, Slots: 1})
	}
	return s
}

// newExecutor builds an executor or fails the test.
func newExecutor(t *testing.T, s comfyui.Settings, o comfyui.Options) *comfyui.Executor {
	t.Helper()
	ex, err := comfyui.New("comfy", s, o)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// record keeps what a job stored, saved and reported.
type record struct {
	mu       sync.Mutex
	files    map[string][]byte
	handles  []executor.Handle
	progress []float64
	stages   []string
	errors   []task.Error
}

// newJob returns a generation-type job with fields (merged over a small
// image's defaults) recording into a new record.
func newJob(t testing.TB, fields map[string]any) (*executor.Job, *record) {
	t.Helper()
	all := map[string]any{"prompt": "a linen dress", "width": 64, "height": 48, "color": 0x336699, "prefix": "t" + uuid.NewString()[:8]}
	for k, v := range fields {
		all[k] = v
	}
	raw, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	rec := &record{files: map[string][]byte{}}
	j := &executor.Job{
		TaskID: uuid.New(), Type: "generation", Operation: "text_to_image", Fields: raw,
		Put: func(_ context.Context, name, ctype string, data []byte) (task.Artifact, error) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.files[name] = data
			return task.Artifact{Key: "test/" + name, ContentType: ctype, Size: int64(len(data))}, nil
		},
		AddError: func(_ context.Context, e task.Error) error {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.errors = append(rec.errors, e)
			return nil
		},
		SaveHandle: func(_ context.Context, h executor.Handle) error {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.handles = append(rec.handles, h)
			return nil
		},
	}
	return j, rec
}

// Progress implements executor.Reporter.
func (r *record) Progress(_ context.Context, pct float64, stage string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress = append(r.progress, pct)
	r.stages = append(r.stages, stage)
	return nil
}

// lastHandle is the last handle saved.
func (r *record) lastHandle(t *testing.T) executor.Handle {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.handles) == 0 {
		t.Fatal("no handle was saved")
	}
	return r.handles[len(r.handles)-1]
}

// testCtx ends with the test or after a minute.
func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// waitFor waits until the fake's stats satisfy cond.
func waitFor(t *testing.T, fake *comfyfake.Server, what string, cond func(comfyfake.Stats) bool) {
	t.Helper()
	c, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if err := fake.Wait(c, cond); err != nil {
		t.Fatalf("waiting for %s: %v (stats %+v)", what, err, fake.Stats())
	}
}

// submissions counts the prompts the fakes accepted.
func submissions(fakes ...*comfyfake.Server) int {
	n := 0
	for _, f := range fakes {
		for _, c := range f.Stats().Submissions {
			n += c
		}
	}
	return n
}

// execute runs a job to its end in a goroutine.
func execute(ex executor.Executor, j *executor.Job, r executor.Reporter, c context.Context) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := executor.Execute(c, ex, j, r)
		done <- err
	}()
	return done
}

// result waits for an execute.
func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the job did not end")
		return fmt.Errorf("unreachable")
	}
}
