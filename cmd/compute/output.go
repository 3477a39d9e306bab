package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/computeserver/compute/client"
)

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// when writes an optional time, "-" when absent.
func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// percent writes a progress value.
func percent(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) + "%" }

// printTask writes one task: JSON as the API answers it, or a table of its
// fields (the type's own fields after the common ones).
func printTask(w io.Writer, t *client.Task, asJSON bool) error {
	if asJSON {
		return printJSON(w, t)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			cells(tw, k, v)
		}
	}
	row("id", t.ID)
	row("type", t.Type)
	row("status", string(t.Status))
	row("progress", percent(t.Progress))
	row("stage", t.Stage)
	row("provider", t.ProviderType)
	row("queue", t.QueueName)
	row("priority", strconv.Itoa(t.Priority))
	row("tenant", t.OriginTenantID)
	row("entity_id", t.EntityID)
	row("created", when(&t.CreatedAt))
	row("run_at", when(&t.RunAt))
	row("started", when(t.StartedAt))
	row("completed", when(t.CompletedAt))
	row("retries", fmt.Sprintf("%d (max attempts %d)", t.RetryCount, t.MaxAttempts))
	if t.ErrorMessage != "" {
		row("error", t.ErrorMessage+" ("+t.ErrorCategory+")")
	}
	row("webhook_url", t.WebhookURL)
	names := make([]string, 0, len(t.Fields))
	for k := range t.Fields {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		row(k, string(t.Fields[k]))
	}
	if t.Result != nil {
		for i, a := range t.Result.Artifacts {
			row("artifact "+strconv.Itoa(i+1), a.URL)
		}
		if len(t.Result.Data) > 0 {
			row("data", string(t.Result.Data))
		}
	}
	return tw.Flush()
}

// printTasks writes a list of tasks, one per row.
func printTasks(w io.Writer, tasks []*client.Task) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tPROGRESS\tQUEUE\tCREATED\tERROR")
	for _, t := range tasks {
		cells(tw, t.ID, t.Type, string(t.Status), percent(t.Progress), t.QueueName, when(&t.CreatedAt), oneLine(t.ErrorMessage, 60))
	}
	return tw.Flush()
}

// oneLine cuts s to one line of at most n characters, without what a
// terminal would act on (termText).
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(termText(s)), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// printResult writes a task's result.
func printResult(w io.Writer, r *client.TaskResult, asJSON bool) error {
	if asJSON {
		return printJSON(w, r)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	cells(tw, "task", r.TaskID)
	cells(tw, "status", string(r.Status))
	cells(tw, "progress", percent(r.Progress))
	if r.ErrorMessage != "" {
		cells(tw, "error", r.ErrorMessage+" ("+r.ErrorCategory+")")
	}
	if r.Result != nil && len(r.Result.Data) > 0 {
		cells(tw, "data", string(r.Result.Data))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Result == nil || len(r.Result.Artifacts) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ARTIFACT\tTYPE\tSIZE\tURL")
	for _, a := range r.Result.Artifacts {
		cells(tw, a.Key, a.ContentType, strconv.FormatInt(a.Size, 10), a.URL)
	}
	return tw.Flush()
}

// printWorkflow writes a workflow with its steps.
func printWorkflow(w io.Writer, wf *client.Workflow, asJSON bool) error {
	if asJSON {
		return printJSON(w, wf)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	cells(tw, "id", wf.ID)
	cells(tw, "status", wf.Status)
	cells(tw, "created", when(&wf.CreatedAt))
	cells(tw, "started", when(wf.StartedAt))
	cells(tw, "completed", when(wf.CompletedAt))
	if wf.Error != "" {
		cells(tw, "error", wf.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(wf.Steps) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSTATUS\tTASK\tDEPENDS ON\tERROR")
	for _, s := range wf.Steps {
		task := "-"
		if s.TaskID != nil {
			task = *s.TaskID
		}
		deps := strings.Join(s.DependsOn, ",")
		if deps == "" {
			deps = "-"
		}
		cells(tw, s.ID, s.Status, task, deps, oneLine(s.Error, 60))
	}
	return tw.Flush()
}

// printWorkflows writes a list of workflows, one per row.
func printWorkflows(w io.Writer, wfs []*client.Workflow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tCREATED\tCOMPLETED\tERROR")
	for _, wf := range wfs {
		cells(tw, wf.ID, wf.Status, when(&wf.CreatedAt), when(wf.CompletedAt), oneLine(wf.Error, 60))
	}
	return tw.Flush()
}
