//go:build linux

package training_test

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/tasks/training"
)

// TestKilledTrainerResumesFromCheckpoint: the trainer's process group is
// killed with SIGKILL mid-run, after a checkpoint (a GPU node dying under
// it); the attempt fails as provider_error and the retry starts from that
// checkpoint's step.
func TestKilledTrainerResumesFromCheckpoint(t *testing.T) {
	t.Parallel()
	set := trainer(t, t.TempDir(), "--step-delay", "0.05")
	job, rt := commandJob(t)
	errc := make(chan error, 1)
	go func() {
		_, err := processWith(t, set, job, rt)
		errc <- err
	}()
	stepRe := regexp.MustCompile(`step-0*(\d+)\.json$`)
	var pgid, ckpt int
	for deadline := time.Now().Add(20 * time.Second); pgid == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint was saved in time")
		}
		if hs := rt.Handles(); len(hs) > 0 {
			h, err := executor.ParseHandle(hs[len(hs)-1])
			if err != nil {
				t.Fatal(err)
			}
			var st struct {
				PGID       int `json:"pgid"`
				Checkpoint *struct {
					Key string `json:"key"`
				} `json:"checkpoint"`
			}
			if err := json.Unmarshal(h.State, &st); err != nil {
				t.Fatal(err)
			}
			if st.Checkpoint != nil {
				m := stepRe.FindStringSubmatch(st.Checkpoint.Key)
				if m == nil {
					t.Fatalf("checkpoint key %q", st.Checkpoint.Key)
				}
				ckpt, _ = strconv.Atoi(m[1])
				pgid = st.PGID
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing the trainer's group %d: %v", pgid, err)
	}
	err := <-errc
	if !executor.Is(err, executor.ProviderError) || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("the killed attempt: %v, want a provider_error naming the signal", err)
	}
	if ckpt < 5 || ckpt >= 20 {
		t.Fatalf("checkpoint of step %d", ckpt)
	}

	job.Task.Attempt, job.Task.ExecutorHandle = 2, nil
	res, err := processWith(t, set, job, rt)
	if err != nil {
		t.Fatalf("the retry: %v", err)
	}
	if out := res.Data.(training.Output); out.StartStep == nil || *out.StartStep < ckpt {
		t.Fatalf("the retry started at step %s, want at least %d (the checkpoint before the kill)", step(out.StartStep), ckpt)
	}
}
