package comfyui_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/comfyui"
	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
)

// BenchmarkBatch runs 16 jobs that may batch on one server with one slot
// whose every node takes 100 ms (a prompt of EmptyImage → SaveImage: about
// 200 ms, whatever its batch size), without batching and in batches of 4
// (max_wait 200 ms). It reports the prompts per job and the wall time of
// the 16 jobs (ms/16jobs). The fake's time per prompt does not grow with
// the batch, a GPU's does (less than linearly): the ratio is the upper
// bound of the gain.
//
//	go test -run '^$' -bench BenchmarkBatch -benchtime 3x ./internal/executor/comfyui/
func BenchmarkBatch(b *testing.B) {
	const jobs = 16
	for _, bc := range []struct {
		name  string
		batch executor.Batching
	}{
		{"no_batch", executor.Batching{}},
		{"batch_4", executor.Batching{MaxSize: 4, MaxWait: 200 * time.Millisecond}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			fake := comfyfake.StartT(b, comfyfake.Options{NodeDelay: 100 * time.Millisecond})
			s := fast(fake.URL())
			// The seed is the empty image's colour: every job's graph
			// differs, and nothing is served from the fake's cache.
			s.Workflows = b.TempDir()
			graph := `{"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": "{{batch_size}}", "color": "{{seed}}"}},
			           "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}}`
			if err := os.WriteFile(filepath.Join(s.Workflows, "generation.json"), []byte(graph), 0o644); err != nil {
				b.Fatal(err)
			}
			ex, err := comfyui.New("comfy", s, comfyui.Options{})
			if err != nil {
				b.Fatal(err)
			}
			set := executor.NewSet()
			if err := set.Add(comfyui.Kind, ex); err != nil {
				b.Fatal(err)
			}
			if err := set.SetLimits("comfy", executor.Limits{Batch: bc.batch}); err != nil {
				b.Fatal(err)
			}
			var total time.Duration
			for i := 0; b.Loop(); i++ {
				done := make(chan error, jobs)
				begin := time.Now()
				for k := range jobs {
					j, rec := newJob(b, map[string]any{"seed": i*jobs + k + 1})
					j.Batchable = true
					go func() {
						_, err := set.Run(context.Background(), "comfy", false, j, rec)
						done <- err
					}()
				}
				for range jobs {
					if err := <-done; err != nil {
						b.Fatal(err)
					}
				}
				total += time.Since(begin)
			}
			b.ReportMetric(float64(submissions(fake))/float64(jobs*b.N), "prompts/job")
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/16jobs")
		})
	}
}
