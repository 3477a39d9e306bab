package command_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/command"
)

// orphanScript leaves a child in the background, reports its pid, and
// waits: killed by Pdeathsig with its worker, the script dies, but its
// child does not.
const orphanScript = `sleep 300 &
echo "PROGRESS 5 $!"
wait
`

// killedWorker runs the worker helper on state, reads the pid of its
// job's child and the job's handle, and kills the worker with -9. The
// child must survive it (the case the record exists for).
func killedWorker(t *testing.T, state string) (int, executor.Handle) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=worker", "COMMAND_TEST_SCRIPT="+script(t, orphanScript), "COMMAND_TEST_STATE="+state)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var child int
	var h executor.Handle
	sc := bufio.NewScanner(out)
	for h.ExternalID == "" && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "CHILD "):
			child, _ = strconv.Atoi(strings.TrimPrefix(line, "CHILD "))
		case strings.HasPrefix(line, "HANDLE "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "HANDLE ")), &h); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("worker helper: %s", line)
		}
	}
	if child == 0 || h.ExternalID == "" {
		_ = cmd.Process.Kill()
		t.Fatalf("the worker helper reported no child (%v)", sc.Err())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if gone(child) {
		t.Fatalf("the child %d died with its worker: the case is not exercised", child)
	}
	t.Cleanup(func() {
		if !gone(child) {
			_ = exec.Command("kill", "-9", strconv.Itoa(child)).Run()
		}
	})
	return child, h
}

// A worker killed with -9 leaves its job's process group running; the
// next executor started on the state directory kills it.
func TestOrphanKilledAtNextStart(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	child, _ := killedWorker(t, state)
	newExecutor(t, command.Settings{Command: []string{"true"}, StateDir: state})
	waitGone(t, child)
}

// The same orphan is killed by a Recover of its job elsewhere on the
// machine, which reports the job lost.
func TestOrphanKilledAtRecover(t *testing.T) {
	t.Parallel()
	child, h := killedWorker(t, t.TempDir())
	ex := newExecutor(t, command.Settings{Command: []string{"true"}}) // another state directory
	if _, err := ex.Recover(ctxFor(t), &executor.Job{}, h); !executor.Is(err, executor.Lost) {
		t.Errorf("Recover: %v, want lost", err)
	}
	waitGone(t, child)
}
