package command_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/command"
	"github.com/computeserver/compute/internal/task"
)

// Arguments and environment values are filled from the task's fields and
// the built-in names; an input field is downloaded and its path given.
func TestTemplates(t *testing.T) {
	t.Parallel()
	prog := script(t, `out="$1"; shift
printf '%s\n' "$@" > "$out/args.txt"
printf '%s|%s|%s' "$GREETING" "$COMPUTE_TASK_ID" "${DATABASE_URL:-unset}" > "$out/env.txt"
cp "$INPUT" "$out/input-copy.png"
`)
	ex := newExecutor(t, command.Settings{
		Command: []string{prog, "{{output_dir}}", "{{prompt}}", "--steps={{steps}}", "{{tags}}", "{{opts}}", "{{nothing}}",
			"{{task_id}}-{{attempt}}", "{{ field:output_dir }}", "{{flag}}"},
		Env: map[string]string{"GREETING": "hello {{prompt}}", "INPUT": "{{input:image_url}}"},
	})
	r := newRec()
	j := r.job(t, map[string]any{"prompt": "a red fox", "steps": 30, "tags": []string{"a", "b"}, "opts": map[string]any{"k": 1},
		"nothing": nil, "output_dir": "the field", "flag": true, "image_url": "https://in.example/img.png?x=1"})
	j.OpenInput = func(_ context.Context, url string) ([]byte, error) {
		if url != "https://in.example/img.png?x=1" {
			return nil, errors.New("unexpected url " + url)
		}
		return []byte("PNGDATA"), nil
	}
	if _, err := executor.Execute(ctxFor(t), ex, j, r); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	args, _ := r.file("args.txt")
	want := strings.Join([]string{"a red fox", "--steps=30", `["a","b"]`, `{"k":1}`, "", j.TaskID.String() + "-1", "the field", "true"}, "\n") + "\n"
	if args != want {
		t.Errorf("arguments:\n%s\nwant:\n%s", args, want)
	}
	if env, _ := r.file("env.txt"); env != "hello a red fox|"+j.TaskID.String()+"|unset" {
		t.Errorf("environment %q", env)
	}
	if in, _ := r.file("input-copy.png"); in != "PNGDATA" {
		t.Errorf("input copy %q", in)
	}
}

// A field the command needs but the task lacks is invalid input, refused
// before any process starts.
func TestMissingField(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "ran")
	ex := newExecutor(t, command.Settings{Command: []string{script(t, `touch "`+marker+`"`), "{{prompt}}"}})
	r := newRec()
	_, err := ex.Start(ctxFor(t), r.job(t, map[string]any{"steps": 3}))
	if !executor.Is(err, executor.InvalidInput) || !strings.Contains(err.Error(), "prompt") {
		t.Errorf("Start without the field: %v, want invalid_input naming prompt", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the process ran")
	}
}

// PROGRESS lines report progress and stage (clamped, never going back),
// RESULT lines become result data, malformed ones are logs, and a failure
// quotes the last log lines only.
func TestProgressAndLogs(t *testing.T) {
	t.Parallel()
	prog := script(t, `echo "PROGRESS 20 loading model"
echo "log line 1"
echo "PROGRESS abc not a number"
echo "PROGRESS 50"
echo "PROGRESS 30 going back" >&2
echo "PROGRESS 150 over"
echo 'RESULT {"loss": 0.25}'
echo "log line 2"
echo "log line 3" >&2
echo "log line 4"
[ "$1" = fail ] && exit 1
exit 0
`)
	ex := newExecutor(t, command.Settings{Command: []string{prog, "{{mode}}"}, LogLines: 3})
	r := newRec()
	out, err := executor.Execute(ctxFor(t), ex, r.job(t, map[string]any{"mode": "ok"}), r)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if want := []float64{20, 50, 50, 100}; !slices.Equal(r.progress, want) {
		t.Errorf("progress %v, want %v", r.progress, want)
	}
	if want := []string{"loading model", "", "going back", "over"}; !slices.Equal(r.stages, want) {
		t.Errorf("stages %q, want %q", r.stages, want)
	}
	if out.Data["loss"] != 0.25 || out.Data["exit_code"] != 0 {
		t.Errorf("result data %v", out.Data)
	}

	r = newRec()
	_, err = executor.Execute(ctxFor(t), ex, r.job(t, map[string]any{"mode": "fail"}), r)
	msg := err.Error()
	if !strings.Contains(msg, "log line 2\nlog line 3\nlog line 4") || strings.Contains(msg, "log line 1") || strings.Contains(msg, "PROGRESS abc") {
		t.Errorf("error %q, want the last three log lines only", msg)
	}
}

// Every file the process leaves in its output directory is an artifact,
// subdirectories included, with a content type by extension.
func TestOutputs(t *testing.T) {
	t.Parallel()
	prog := script(t, `mkdir -p "$1/frames"
printf 'png' > "$1/image.png"
printf '{}' > "$1/frames/meta.json"
printf 'w' > "$1/model weights.safetensors"
printf 'x' > "$1/notes.zzz"
`)
	ex := newExecutor(t, command.Settings{Command: []string{prog, "{{output_dir}}"}})
	r := newRec()
	out, err := executor.Execute(ctxFor(t), ex, r.job(t, nil), r)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	want := map[string]string{"frames/meta.json": "application/json", "image.png": "image/png",
		"model_weights.safetensors": "application/octet-stream", "notes.zzz": "application/octet-stream"}
	if len(out.Artifacts) != len(want) {
		t.Errorf("artifacts %+v, want %d", out.Artifacts, len(want))
	}
	for name, ct := range want {
		if got, ok := r.types[name]; !ok || got != ct {
			t.Errorf("output %s stored as %q (stored: %v), want %s", name, got, ok, ct)
		}
	}
}

// An exit code classifies a failure: documented codes have their
// categories, others and deaths by a signal are provider errors.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	prog := script(t, `[ "$1" = signal ] && kill -9 $$
exit "$1"`)
	ex := newExecutor(t, command.Settings{Command: []string{prog, "{{code}}"}})
	for _, tc := range []struct {
		name string
		code string
		want executor.Category
	}{
		{"ok", "0", ""},
		{"error", "1", executor.ProviderError},
		{"invalid input", "2", executor.InvalidInput},
		{"safety", "3", executor.SafetyBlocked},
		{"unavailable", "75", executor.ProviderUnavailable},
		{"other", "42", executor.ProviderError},
		{"signal", "signal", executor.ProviderError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRec()
			_, err := executor.Execute(ctxFor(t), ex, r.job(t, map[string]any{"code": tc.code}), r)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("exit 0: %v", err)
				}
				return
			}
			if got := executor.CategoryOf(err); got != tc.want || task.IsPermanent(err) == tc.want.Retryable() {
				t.Errorf("exit %s: %v (category %s), want %s", tc.code, err, got, tc.want)
			}
		})
	}
}

// termScript traps SIGTERM, notes it in $1/term, and keeps running; its
// background child's pid is the stage of its first progress line.
const termScript = `trap 'echo term >> "$1/term"' TERM
sleep 300 &
echo "PROGRESS 5 $!"
while :; do sleep 1 & wait $!; done
`

// startTrapping starts termScript and returns its job's handle, its
// child's pid and the channel of its Wait's end.
func startTrapping(t *testing.T, ex *command.Executor, c context.Context, dir string) (executor.Handle, int, <-chan error) {
	t.Helper()
	r := newRec()
	r.reported = make(chan string, 10)
	j := r.job(t, map[string]any{"dir": dir})
	h, err := ex.Start(c, j)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ex.Wait(c, j, h, r)
		done <- err
	}()
	var stage string
	select {
	case stage = <-r.reported:
	case <-time.After(10 * time.Second):
		t.Fatal("the script never reported")
	}
	pid, err := strconv.Atoi(stage)
	if err != nil {
		t.Fatalf("stage %q is not a pid", stage)
	}
	return h, pid, done
}

// A cancel sends SIGTERM to the process group, then SIGKILL after the
// grace to a process that ignores it; the whole group ends.
func TestCancelTermThenKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const grace = 700 * time.Millisecond
	ex := newExecutor(t, command.Settings{Command: []string{script(t, termScript), "{{dir}}"}, GraceSeconds: grace.Seconds()})
	c := ctxFor(t)
	h, child, done := startTrapping(t, ex, c, dir)
	began := time.Now()
	if err := ex.Cancel(c, h); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Wait did not return after the cancel")
	}
	if !executor.Is(err, executor.Cancelled) {
		t.Errorf("Wait: %v, want cancelled", err)
	}
	if took := time.Since(began); took < grace {
		t.Errorf("the process ended %v after SIGTERM, before the %v grace: SIGTERM was not ignored?", took, grace)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "term")); !strings.Contains(string(b), "term") {
		t.Error("the process never got SIGTERM")
	}
	waitGone(t, child)
	if pgid := stateOf(t, h).PGID; !groupGone(pgid) {
		t.Errorf("process group %d still has members", pgid)
	}
}

// The run's deadline is the execution timeout: the process group is
// terminated the same way, and the error is the deadline's.
func TestTimeout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ex := newExecutor(t, command.Settings{Command: []string{script(t, termScript), "{{dir}}"}, GraceSeconds: 0.3})
	c, cancel := context.WithTimeout(ctxFor(t), 1500*time.Millisecond)
	defer cancel()
	r := newRec()
	r.reported = make(chan string, 10)
	_, err := executor.Execute(c, ex, r.job(t, map[string]any{"dir": dir}), r)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Execute past its deadline: %v", err)
	}
	child, err := strconv.Atoi(<-r.reported)
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, child)
	waitGone(t, stateOf(t, r.lastHandle(t)).PGID) // the trap ran before the leader ended
	if b, _ := os.ReadFile(filepath.Join(dir, "term")); !strings.Contains(string(b), "term") {
		t.Error("the process never got SIGTERM")
	}
}

// A checkpoint the process reports is stored as an artifact, recorded in
// the handle, and handed to the retry ({{checkpoint}}); a recovered run on
// another machine gets it through the artifact's URL. Once the task
// succeeded no checkpoint is handed on.
func TestCheckpoints(t *testing.T) {
	t.Parallel()
	prog := script(t, `out="$1" ckpt="$2"
if [ -z "$ckpt" ]; then
  printf 'step-100' > state.bin
  echo "CHECKPOINT state.bin"
  echo "PROGRESS 50 saved"
  exit 1
fi
cp "$ckpt" "$out/resumed-from.txt"
`)
	settings := command.Settings{Command: []string{prog, "{{output_dir}}", "{{checkpoint}}"}, StateDir: t.TempDir()}
	ex := newExecutor(t, settings)
	r := newRec()
	first := r.job(t, nil)
	_, err := executor.Execute(ctxFor(t), ex, first, r)
	if !executor.Is(err, executor.ProviderError) {
		t.Fatalf("first attempt: %v, want provider_error", err)
	}
	if got, ok := r.file("checkpoints/state.bin"); !ok || got != "step-100" {
		t.Errorf("checkpoint artifact %q (stored: %v)", got, ok)
	}
	saved := r.lastHandle(t)
	if st := stateOf(t, saved); st.Checkpoint == nil || st.Checkpoint.Key != "tasks/t/checkpoints/state.bin" {
		t.Errorf("the saved handle's state %s does not name the checkpoint", saved.State)
	}

	// A retry on this machine: the engine cleared the handle.
	retry := r.job(t, nil)
	retry.TaskID, retry.Attempt = first.TaskID, 2
	if _, err := executor.Execute(ctxFor(t), ex, retry, r); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got, _ := r.file("resumed-from.txt"); got != "step-100" {
		t.Errorf("the retry resumed from %q", got)
	}

	// A recovered run on another machine (another state directory).
	other := newExecutor(t, command.Settings{Command: settings.Command})
	r2 := newRec()
	rec := r2.job(t, nil)
	rec.TaskID, rec.Saved = first.TaskID, &saved
	rec.OpenInput = func(_ context.Context, url string) ([]byte, error) {
		if url != "http://artifacts.test/checkpoints/state.bin" {
			return nil, errors.New("unexpected url " + url)
		}
		return []byte("step-100 from the store"), nil
	}
	if _, err := executor.Execute(ctxFor(t), other, rec, r2); err != nil {
		t.Fatalf("recovered run: %v", err)
	}
	if got, _ := r2.file("resumed-from.txt"); got != "step-100 from the store" {
		t.Errorf("the recovered run resumed from %q", got)
	}

	// The task succeeded: a new attempt starts without a checkpoint.
	again := newRec()
	j := again.job(t, nil)
	j.TaskID = first.TaskID
	if _, err := executor.Execute(ctxFor(t), ex, j, again); !executor.Is(err, executor.ProviderError) {
		t.Errorf("after success: %v, want the first attempt's failure (no checkpoint)", err)
	}
}

// A program that cannot be run makes the executor unavailable, and Ping
// says so.
func TestMissingProgram(t *testing.T) {
	t.Parallel()
	ex := newExecutor(t, command.Settings{Command: []string{filepath.Join(t.TempDir(), "absent")}})
	r := newRec()
	if _, err := ex.Start(ctxFor(t), r.job(t, nil)); !executor.Is(err, executor.ProviderUnavailable) {
		t.Errorf("Start: %v, want provider_unavailable", err)
	}
	if err := ex.Ping(ctxFor(t)); !executor.Is(err, executor.ProviderUnavailable) {
		t.Errorf("Ping: %v", err)
	}
}

// Settings are validated, naming the setting.
func TestSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		s    command.Settings
		want string
	}{
		{"no command", command.Settings{}, "command"},
		{"bad mode", command.Settings{Mode: "daemon", Command: []string{"x"}}, "mode"},
		{"templated server", command.Settings{Mode: command.ModeServer, Command: []string{"x", "{{prompt}}"}}, "templated"},
		{"inputs in process mode", command.Settings{Command: []string{"x"}, Inputs: []string{"image_url"}}, "inputs"},
		{"negative grace", command.Settings{Command: []string{"x"}, GraceSeconds: -1}, "grace_seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.s.StateDir = t.TempDir()
			_, err := command.New("cmd", tc.s, command.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

// A process's background children die with it: what is left of its group
// is killed when it exits.
func TestStragglersKilled(t *testing.T) {
	t.Parallel()
	ex := newExecutor(t, command.Settings{Command: []string{script(t, `sleep 300 &
echo "PROGRESS 50 $!"
exit 0`)}})
	r := newRec()
	r.reported = make(chan string, 10)
	if _, err := executor.Execute(ctxFor(t), ex, r.job(t, nil), r); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	child, err := strconv.Atoi(<-r.reported)
	if err != nil {
		t.Fatal(err)
	}
	if !gone(child) {
		t.Errorf("the background child %d outlived its task", child)
	}
}
