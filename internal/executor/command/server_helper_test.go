package command_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/command"
)

// startsEnv names a file the helper server appends a line to when it
// starts, so a test can count the server's starts.
const startsEnv = "COMMAND_TEST_STARTS"

// helperRequest is what the helper server reads of a request.
type helperRequest struct {
	ID        string `json:"id"`
	Op        string `json:"op"`
	OutputDir string `json:"output_dir"`
	WorkDir   string `json:"work_dir"`
	Fields    struct {
		Behaviour string `json:"behaviour"`
		Category  string `json:"category"`
		Running   string `json:"running"`
		Release   string `json:"release"`
	} `json:"fields"`
}

// runServerHelper is a server speaking the command executor's protocol
// on stdin and stdout, one goroutine per task. The task's field
// behaviour says what it does:
//
//	ok           progress, an output file, output data, done
//	fail         an error reply of the field category
//	hold         writes a line to the fifo running, waits for a line on release, then as ok
//	wait_cancel  waits for its cancel request, then replies cancelled
//	after_cancel waits until any task was cancelled, then as ok
//	crash        the server exits with code 3
//
// It exits at the end of its input.
func runServerHelper() {
	if p := os.Getenv(startsEnv); p != "" {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			_ = f.Close()
		}
	}
	fmt.Fprintln(os.Stderr, "loading the model") // a log line
	var (
		mu        sync.Mutex
		out       = json.NewEncoder(os.Stdout)
		cancels   = map[string]chan struct{}{}
		cancelled = make(chan struct{})
		once      sync.Once
	)
	reply := func(v map[string]any) {
		mu.Lock()
		defer mu.Unlock()
		_ = out.Encode(v)
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var q helperRequest
		if json.Unmarshal(sc.Bytes(), &q) != nil {
			continue
		}
		if q.Op == "cancel" {
			mu.Lock()
			ch := cancels[q.ID]
			mu.Unlock()
			if ch != nil {
				close(ch)
			}
			once.Do(func() { close(cancelled) })
			continue
		}
		ch := make(chan struct{})
		mu.Lock()
		cancels[q.ID] = ch
		mu.Unlock()
		go func() {
			reply(map[string]any{"id": q.ID, "progress": 10, "stage": "starting"})
			switch q.Fields.Behaviour {
			case "fail":
				reply(map[string]any{"id": q.ID, "error": map[string]any{"category": q.Fields.Category, "message": "the task failed"}})
				return
			case "hold":
				if err := os.WriteFile(q.Fields.Running, []byte("running\n"), 0); err != nil {
					return
				}
				f, err := os.Open(q.Fields.Release)
				if err != nil {
					return
				}
				_, _ = bufio.NewReader(f).ReadString('\n')
				_ = f.Close()
			case "wait_cancel":
				<-ch
				reply(map[string]any{"id": q.ID, "error": map[string]any{"category": "cancelled", "message": "stopped"}})
				return
			case "after_cancel":
				<-cancelled
			case "crash":
				mu.Lock() // no reply goes out after this
				os.Exit(3)
			}
			reply(map[string]any{"id": q.ID, "progress": 60, "stage": "writing"})
			if err := os.WriteFile(filepath.Join(q.OutputDir, "result.txt"), []byte("served "+q.Fields.Behaviour), 0o600); err != nil {
				reply(map[string]any{"id": q.ID, "error": map[string]any{"category": "provider_error", "message": err.Error()}})
				return
			}
			reply(map[string]any{"id": q.ID, "output": map[string]any{"pid": os.Getpid()}})
			reply(map[string]any{"id": q.ID, "done": true})
		}()
	}
}

// runWorkerHelper is a worker that starts one process-mode job whose
// script leaves a child in the background, prints the child's pid and the
// job's handle, and blocks until it is killed.
func runWorkerHelper() {
	fail := func(err error) {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	ex, err := command.New("cmd", command.Settings{Command: []string{os.Getenv("COMMAND_TEST_SCRIPT")}, StateDir: os.Getenv("COMMAND_TEST_STATE")}, command.Options{})
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	job := &executor.Job{Fields: json.RawMessage(`{}`)}
	h, err := ex.Start(ctx, job)
	if err != nil {
		fail(err)
	}
	raw, _ := json.Marshal(h)
	_, err = ex.Wait(ctx, job, h, executor.ReporterFunc(func(_ context.Context, _ float64, stage string) error {
		fmt.Printf("CHILD %s\nHANDLE %s\n", stage, raw)
		return nil
	}))
	fail(fmt.Errorf("the job ended: %v", err))
}
