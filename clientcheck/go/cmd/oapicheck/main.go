// Command oapicheck drives a live compute server through the client that
// oapi-codegen generated from its /openapi.json (package oapi): union
// create, get as the concrete type, list with several statuses, patch,
// cancel, a completed task's typed result, and problem responses. It exits
// non-zero on the first mismatch.
package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/clientcheck/go/internal/check"
	"github.com/computeserver/compute/clientcheck/go/oapi"
)

func main() {
	base, key := check.Env()
	ctx := context.Background()
	rec := &check.Recorder{}
	c, err := oapi.NewClientWithResponses(base, oapi.WithHTTPClient(check.Client(rec)),
		oapi.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+key)
			return nil
		}))
	check.NoErr(err, "client")

	// Union create: an echo task that waits, so it can be patched.
	later := time.Now().Add(24 * time.Hour)
	var body oapi.TaskCreate
	check.NoErr(body.FromEchoTaskCreate(oapi.EchoTaskCreate{Message: "from oapi-codegen", RunAt: &later}), "union body")
	created, err := c.CreateTaskWithResponse(ctx, nil, body)
	check.NoErr(err, "create")
	check.OK(created.StatusCode() == 201 && created.JSON201 != nil, "create: %d %s", created.StatusCode(), created.Body)
	check.OK(rec.KeyCount("task_type") == 1, "create sent task_type %d times", rec.KeyCount("task_type"))
	echo, err := created.JSON201.AsEchoTaskPublic()
	check.NoErr(err, "created task as echo")
	id := echo.Id
	check.OK(echo.Status == oapi.TaskStatusPending && echo.Message == "from oapi-codegen" && echo.Result == nil, "created %+v", echo)

	// Get, as the concrete type chosen by the discriminator.
	got, err := c.GetTaskWithResponse(ctx, id)
	check.NoErr(err, "get")
	check.OK(got.JSON200 != nil, "get: %d %s", got.StatusCode(), got.Body)
	v, err := got.JSON200.ValueByDiscriminator()
	check.NoErr(err, "discriminator")
	e, ok := v.(oapi.EchoTaskPublic)
	check.OK(ok && e.Id == id && len(e.Errors) == 0, "get returned %T %+v", v, v)

	// List with two statuses and a type.
	statuses := []oapi.TaskStatus{oapi.TaskStatusPending, oapi.TaskStatusCancelled}
	types := []string{"echo"}
	list, err := c.ListTasksWithResponse(ctx, &oapi.ListTasksParams{Status: &statuses, TaskType: &types})
	check.NoErr(err, "list")
	check.OK(list.JSON200 != nil, "list: %d %s", list.StatusCode(), list.Body)
	found := false
	for _, it := range list.JSON200.Items {
		t, err := it.AsEchoTaskPublic()
		check.NoErr(err, "list item")
		check.OK(t.Status == oapi.TaskStatusPending || t.Status == oapi.TaskStatusCancelled, "list item in status %s", t.Status)
		found = found || t.Id == id
	}
	check.OK(found, "the new task is not listed")

	// Patch.
	msg, prio := "patched by oapi-codegen", int64(5)
	patched, err := c.UpdateTaskWithResponse(ctx, id, oapi.TaskUpdate{Message: &msg, Priority: &prio})
	check.NoErr(err, "patch")
	check.OK(patched.JSON200 != nil, "patch: %d %s", patched.StatusCode(), patched.Body)
	pe, err := patched.JSON200.AsEchoTaskPublic()
	check.NoErr(err, "patched as echo")
	check.OK(pe.Message == msg && pe.Priority == prio, "patched %+v", pe)

	// Cancel.
	cancelled, err := c.CancelTaskWithResponse(ctx, id)
	check.NoErr(err, "cancel")
	check.OK(cancelled.JSON200 != nil, "cancel: %d %s", cancelled.StatusCode(), cancelled.Body)
	ce, err := cancelled.JSON200.AsEchoTaskPublic()
	check.NoErr(err, "cancelled as echo")
	check.OK(ce.Status == oapi.TaskStatusCancelled, "cancelled task is %s", ce.Status)

	// A generation task runs to completion; its result is typed.
	seed, size := int64(7), int64(64)
	var gen oapi.TaskCreate
	check.NoErr(gen.FromGenerationTaskCreate(oapi.GenerationTaskCreate{Prompt: "a red dress", Seed: &seed, Width: &size, Height: &size}), "generation body")
	gc, err := c.CreateTaskWithResponse(ctx, nil, gen)
	check.NoErr(err, "create generation")
	check.OK(gc.JSON201 != nil, "create generation: %d %s", gc.StatusCode(), gc.Body)
	g, err := gc.JSON201.AsGenerationTaskPublic()
	check.NoErr(err, "generation as generation")
	var res *oapi.GetTaskResultResponse
	check.Until("the generation task", func() bool {
		res, err = c.GetTaskResultWithResponse(ctx, g.Id)
		check.NoErr(err, "result")
		check.OK(res.JSON200 != nil, "result: %d %s", res.StatusCode(), res.Body)
		return res.JSON200.Status == oapi.TaskStatusCompleted
	})
	check.OK(res.JSON200.Result != nil && len(res.JSON200.Result.Artifacts) == 1, "result %s", res.Body)
	art := res.JSON200.Result.Artifacts[0]
	check.OK(art.Url != "" && art.Size > 0 && art.Width != nil && *art.Width == size && art.Seed != nil && *art.Seed == seed, "artifact %+v", art)

	// Problems: an unknown task, and a body that fails validation.
	missing, err := c.GetTaskWithResponse(ctx, uuid.New())
	check.NoErr(err, "get missing")
	check.OK(missing.StatusCode() == 404 && missing.ApplicationproblemJSON404 != nil, "missing: %d %s", missing.StatusCode(), missing.Body)
	p := missing.ApplicationproblemJSON404
	check.OK(p.Status != nil && *p.Status == 404 && p.Title != nil && *p.Title != "", "404 problem %+v", p)
	var bad oapi.TaskCreate
	check.NoErr(bad.FromEchoTaskCreate(oapi.EchoTaskCreate{Message: ""}), "bad body")
	invalid, err := c.CreateTaskWithResponse(ctx, nil, bad)
	check.NoErr(err, "create invalid")
	check.OK(invalid.StatusCode() == 422 && invalid.ApplicationproblemJSON422 != nil, "invalid: %d %s", invalid.StatusCode(), invalid.Body)
	located := false
	if errs := invalid.ApplicationproblemJSON422.Errors; errs != nil {
		for _, d := range *errs {
			located = located || d.Location != nil && *d.Location == "body.message"
		}
	}
	check.OK(located, "422 problem names no body.message: %s", invalid.Body)

	fmt.Println("oapi-codegen client: ok")
}
