package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/computeserver/compute/client"
)

// connect returns a client of the server COMPUTE_URL names, with the key
// COMPUTE_API_KEY holds (TestMain sets both to a server it runs).
func connect() *client.Client {
	c, err := client.New(os.Getenv("COMPUTE_URL"), client.WithAPIKey(os.Getenv("COMPUTE_API_KEY")))
	if err != nil {
		log.Fatal(err)
	}
	return c
}

func ExampleClient_Create() {
	c := connect()
	ctx := context.Background()
	t, err := c.Create(ctx, client.TaskCreate{
		Type:     "echo",
		Fields:   map[string]any{"message": "hello"},
		EntityID: "order-42",
	})
	if err != nil {
		log.Fatal(err)
	}
	var msg string
	if _, err := t.Field("message", &msg); err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Type, t.Status, t.EntityID, msg)
	// Output: echo pending order-42 hello
}

func ExampleClient_Wait() {
	c := connect()
	ctx := context.Background()
	created, err := c.Create(ctx, client.TaskCreate{Type: "echo", Fields: map[string]any{"message": "hi"}})
	if err != nil {
		log.Fatal(err)
	}
	t, err := c.Wait(ctx, created.ID, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Status, string(t.Result.Data))
	// Output: completed {"message":"hi"}
}

func ExampleClient_Watch() {
	c := connect()
	ctx := context.Background()
	t, err := c.Create(ctx, client.TaskCreate{Type: "echo", Fields: map[string]any{"message": "watch me", "sleep_ms": 50}})
	if err != nil {
		log.Fatal(err)
	}
	for ev, err := range c.Watch(ctx, t.ID, nil) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.EventType, ev.Status)
	}
	// Output:
	// echo_status_update pending
	// echo_status_update executing
	// echo_status_update completed
}

func ExampleProblem() {
	c := connect()
	_, err := c.Create(context.Background(), client.TaskCreate{Type: "echo", Fields: map[string]any{"message": ""}})
	var p *client.Problem
	if errors.As(err, &p) {
		fmt.Println(p.Status, p.Title)
		for _, e := range p.Errors {
			fmt.Println(e.Location)
		}
	}
	// Output:
	// 422 Unprocessable Entity
	// body.message
}

func ExampleClient_List() {
	c := connect()
	ctx := context.Background()
	queue := fmt.Sprintf("example-%d", time.Now().UnixNano()) // a queue of this run's own
	later := time.Now().Add(time.Hour)                        // the tasks wait, pending
	for _, msg := range []string{"first", "second"} {
		_, err := c.Create(ctx, client.TaskCreate{Type: "echo", Fields: map[string]any{"message": msg},
			QueueName: queue, RunAt: later})
		if err != nil {
			log.Fatal(err)
		}
	}
	// All pages through the list (one task per page here), newest first.
	for t, err := range c.All(ctx, &client.ListOptions{Queues: []string{queue}, Limit: 1}) {
		if err != nil {
			log.Fatal(err)
		}
		var msg string
		_, _ = t.Field("message", &msg)
		fmt.Println(t.Status, msg)
	}
	// Output:
	// pending second
	// pending first
}

func ExampleClient_Patch() {
	c := connect()
	ctx := context.Background()
	t, err := c.Create(ctx, client.TaskCreate{Type: "echo", Fields: map[string]any{"message": "draft"},
		RunAt: time.Now().Add(time.Hour)})
	if err != nil {
		log.Fatal(err)
	}
	t, err = c.Patch(ctx, t.ID, client.TaskPatch{Priority: new(5), Fields: map[string]any{"message": "final"}})
	if err != nil {
		log.Fatal(err)
	}
	var msg string
	_, _ = t.Field("message", &msg)
	fmt.Println(t.Priority, msg)
	t, err = c.Cancel(ctx, t.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Status)
	// A cancelled task cannot be cancelled again: 409.
	_, err = c.Cancel(ctx, t.ID)
	fmt.Println(client.StatusOf(err))
	// Output:
	// 5 final
	// cancelled
	// 409
}

func ExampleClient_Retry() {
	c := connect()
	ctx := context.Background()
	t, err := c.Create(ctx, client.TaskCreate{Type: "echo", Fields: map[string]any{"message": "x", "fail_with": "boom"}})
	if err != nil {
		log.Fatal(err)
	}
	if t, err = c.Wait(ctx, t.ID, nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Status, t.ErrorMessage)
	if t, err = c.Retry(ctx, t.ID); err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Status)
	if t, err = c.Wait(ctx, t.ID, nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Status, len(t.Errors))
	// Output:
	// failed boom
	// pending
	// failed 2
}

func ExampleClient_Download() {
	c := connect()
	ctx := context.Background()
	t, err := c.Create(ctx, client.TaskCreate{Type: "generation",
		Fields: map[string]any{"prompt": "a red summer dress", "seed": 42, "width": 64, "height": 96}})
	if err != nil {
		log.Fatal(err)
	}
	if t, err = c.Wait(ctx, t.ID, nil); err != nil {
		log.Fatal(err)
	}
	a := t.Result.Artifacts[0]
	var png bytes.Buffer
	n, err := c.Download(ctx, a, &png) // checked against a.Size and a.SHA256
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(a.ContentType, a.Width, a.Height, *a.Seed, n == a.Size, bytes.HasPrefix(png.Bytes(), []byte("\x89PNG")))
	// Output: image/png 64 96 42 true true
}

func ExampleClient_CreateWorkflow() {
	c := connect()
	ctx := context.Background()
	w, err := c.CreateWorkflow(ctx, client.WorkflowCreate{Start: true, Steps: []client.WorkflowStep{
		{ID: "first", Task: map[string]any{"task_type": "echo", "message": "one"}},
		{ID: "second", DependsOn: []string{"first"},
			Task: map[string]any{"task_type": "echo", "message": "{{steps.first.data.message}} and two"}},
	}})
	if err != nil {
		log.Fatal(err)
	}
	if w, err = c.WaitWorkflow(ctx, w.ID, 50*time.Millisecond); err != nil {
		log.Fatal(err)
	}
	fmt.Println(w.Status)
	last := w.Steps[1]
	r, err := c.Result(ctx, *last.TaskID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(last.ID, last.Status, string(r.Result.Data))
	// Output:
	// completed
	// second completed {"message":"one and two"}
}
