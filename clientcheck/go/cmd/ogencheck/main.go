// Command ogencheck drives a live compute server through the client that
// ogen generated from its /openapi.json (package ogen): union create, get
// as the concrete type, list with several statuses, patch, cancel, a
// completed task's typed result, and problem responses. It exits non-zero
// on the first mismatch.
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/clientcheck/go/internal/check"
	"github.com/computeserver/compute/clientcheck/go/ogen"
)

// bearer supplies the API key.
type bearer string

// Bearer returns the key for every operation.
func (b bearer) Bearer(context.Context, ogen.OperationName) (ogen.Bearer, error) {
	return ogen.Bearer{Token: string(b)}, nil
}

func main() {
	base, key := check.Env()
	ctx := context.Background()
	rec := &check.Recorder{}
	c, err := ogen.NewClient(base, bearer(key), ogen.WithClient(check.Client(rec)))
	check.NoErr(err, "client")

	// Union create: an echo task that waits, so it can be patched.
	created, err := c.CreateTask(ctx, ogen.NewEchoTaskCreateTaskCreate(ogen.EchoTaskCreate{
		Message: "from ogen", RunAt: ogen.NewOptDateTime(time.Now().Add(24 * time.Hour)),
	}), ogen.CreateTaskParams{})
	check.NoErr(err, "create")
	cr, ok := created.(*ogen.CreateTaskCreated)
	check.OK(ok, "create answered %T %+v", created, created)
	check.OK(rec.KeyCount("task_type") == 1, "create sent task_type %d times", rec.KeyCount("task_type"))
	echo, ok := ogen.TaskPublic(*cr).GetEchoTaskPublic()
	check.OK(ok, "created task is %s, not echo", cr.Type)
	id := echo.ID
	check.OK(echo.Status == ogen.TaskStatusPending && echo.Message == "from ogen" && !echo.Result.Set, "created %+v", echo)

	// Get, as the concrete type chosen by the discriminator.
	got, err := c.GetTask(ctx, ogen.GetTaskParams{TaskID: id})
	check.NoErr(err, "get")
	gt, ok := got.(*ogen.TaskPublic)
	check.OK(ok, "get answered %T", got)
	e, ok := gt.GetEchoTaskPublic()
	check.OK(ok && e.ID == id && len(e.Errors) == 0, "get returned %+v", gt)

	// List with two statuses and a type.
	listed, err := c.ListTasks(ctx, ogen.ListTasksParams{
		Status: []ogen.TaskStatus{ogen.TaskStatusPending, ogen.TaskStatusCancelled}, TaskType: []string{"echo"},
	})
	check.NoErr(err, "list")
	page, ok := listed.(*ogen.ListTasksOK)
	check.OK(ok, "list answered %T", listed)
	found := false
	for _, it := range page.Items {
		t, ok := it.GetEchoTaskPublic()
		check.OK(ok, "list item of type %s", it.Type)
		check.OK(t.Status == ogen.TaskStatusPending || t.Status == ogen.TaskStatusCancelled, "list item in status %s", t.Status)
		found = found || t.ID == id
	}
	check.OK(found, "the new task is not listed")

	// Patch.
	patched, err := c.UpdateTask(ctx, &ogen.TaskUpdate{
		Message: ogen.NewOptString("patched by ogen"), Priority: ogen.NewOptInt64(5),
	}, ogen.UpdateTaskParams{TaskID: id})
	check.NoErr(err, "patch")
	pt, ok := patched.(*ogen.TaskPublic)
	check.OK(ok, "patch answered %T %+v", patched, patched)
	pe, _ := pt.GetEchoTaskPublic()
	check.OK(pe.Message == "patched by ogen" && pe.Priority == 5, "patched %+v", pe)

	// Cancel.
	cancelled, err := c.CancelTask(ctx, ogen.CancelTaskParams{TaskID: id})
	check.NoErr(err, "cancel")
	ct, ok := cancelled.(*ogen.TaskPublic)
	check.OK(ok, "cancel answered %T %+v", cancelled, cancelled)
	ce, _ := ct.GetEchoTaskPublic()
	check.OK(ce.Status == ogen.TaskStatusCancelled, "cancelled task is %s", ce.Status)

	// A generation task runs to completion; its result is typed.
	gc, err := c.CreateTask(ctx, ogen.NewGenerationTaskCreateTaskCreate(ogen.GenerationTaskCreate{
		Prompt: "a red dress", Seed: ogen.NewOptInt64(7), Width: ogen.NewOptInt64(64), Height: ogen.NewOptInt64(64),
	}), ogen.CreateTaskParams{})
	check.NoErr(err, "create generation")
	gcr, ok := gc.(*ogen.CreateTaskCreated)
	check.OK(ok, "create generation answered %T %+v", gc, gc)
	g, ok := ogen.TaskPublic(*gcr).GetGenerationTaskPublic()
	check.OK(ok, "generation task is %s", gcr.Type)
	var res *ogen.ResultBody
	check.Until("the generation task", func() bool {
		r, err := c.GetTaskResult(ctx, ogen.GetTaskResultParams{TaskID: g.ID})
		check.NoErr(err, "result")
		res, ok = r.(*ogen.ResultBody)
		check.OK(ok, "result answered %T", r)
		return res.Status == ogen.TaskStatusCompleted
	})
	check.OK(res.Result.Set && len(res.Result.Value.Artifacts) == 1, "result %+v", res)
	art := res.Result.Value.Artifacts[0]
	check.OK(art.URL != "" && art.Size > 0 && art.Width.Or(0) == 64 && art.Seed.Or(-1) == 7, "artifact %+v", art)

	// Problems: an unknown task, and a body that fails validation.
	missing, err := c.GetTask(ctx, ogen.GetTaskParams{TaskID: uuid.New()})
	check.NoErr(err, "get missing")
	nf, ok := missing.(*ogen.GetTaskNotFound)
	check.OK(ok, "missing answered %T", missing)
	check.OK(nf.Status.Or(0) == 404 && nf.Title.Or("") != "", "404 problem %+v", nf)
	invalid, err := c.CreateTask(ctx, ogen.NewEchoTaskCreateTaskCreate(ogen.EchoTaskCreate{Message: ""}), ogen.CreateTaskParams{})
	check.NoErr(err, "create invalid")
	up, ok := invalid.(*ogen.CreateTaskUnprocessableEntity)
	check.OK(ok, "invalid create answered %T %+v", invalid, invalid)
	located := false
	for _, d := range up.Errors {
		located = located || d.Location.Or("") == "body.message"
	}
	check.OK(located, "422 problem names no body.message: %+v", up)

	fmt.Println("ogen client: ok")
}
