package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/computeserver/compute/client"
)

// workflowCmd is `compute workflow …`.
func workflowCmd(stdout, stderr io.Writer) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "workflow",
		Short: "Create, inspect, watch and act on workflows on a server (COMPUTE_URL, COMPUTE_API_KEY)",
		Long:  "Talks to a running server like `compute task`. Exit statuses: docs/cli.md.",
	}
	cf.register(cmd)
	with := cf.runner(stderr)
	action := func(use, short string, call func(*client.Client, context.Context, string) (*client.Workflow, error)) *cobra.Command {
		return idCommand(use+" <workflow id>", short, with, call, func(w *client.Workflow, asJSON bool) error { return printWorkflow(stdout, w, asJSON) })
	}
	cmd.AddCommand(
		workflowCreateCmd(stdout, stderr, with),
		action("get", "Show a workflow with its steps", (*client.Client).GetWorkflow),
		workflowListCmd(stdout, with),
		action("start", "Start a pending workflow", (*client.Client).StartWorkflow),
		action("cancel", "Cancel a workflow and its step tasks", (*client.Client).CancelWorkflow),
		action("resume", "Run a failed or cancelled workflow's failed and cancelled steps again", (*client.Client).ResumeWorkflow),
		&cobra.Command{Use: "cleanup <workflow id>", Short: "Delete a finished workflow's intermediate artifacts", Args: exactArgs(1),
			RunE: with(func(cmd *cobra.Command, args []string, c *client.Client, s clientSettings) error {
				out, err := c.CleanupWorkflow(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if s.outputJSON {
					return printJSON(stdout, out)
				}
				fmt.Fprintf(stdout, "deleted %d artifacts of steps %v\n", out.DeletedArtifacts, out.Steps)
				return nil
			})},
		&cobra.Command{Use: "watch <workflow id>", Short: "Show a workflow's steps as they change until it finishes; exit 0 completed, 1 failed, 2 cancelled",
			Args: exactArgs(1),
			RunE: with(func(cmd *cobra.Command, args []string, c *client.Client, s clientSettings) error {
				return watchWorkflow(cmd.Context(), c, args[0], stdout, stderr, s.outputJSON)
			})},
	)
	return cmd
}

func workflowCreateCmd(stdout, stderr io.Writer, with runner) *cobra.Command {
	var (
		file         string
		start, watch bool
	)
	cmd := &cobra.Command{
		Use:     "create --file workflow.json",
		Short:   "Create a workflow from a JSON file (steps, start, webhook_url) as POST /api/v1/workflows/ takes it",
		Example: "  compute workflow create --file pipeline.json --start --watch",
		Args:    exactArgs(0),
		RunE: with(func(cmd *cobra.Command, _ []string, c *client.Client, s clientSettings) error {
			if file == "" {
				return usagef("--file is required (- for standard input)")
			}
			raw, err := readFile(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			var in client.WorkflowCreate
			if err := json.Unmarshal(raw, &in); err != nil {
				return usagef("--file %s: want a workflow object ({\"steps\": [{\"id\", \"task\", \"depends_on\"}…]}): %v", file, err)
			}
			in.Start = in.Start || start
			w, err := c.CreateWorkflow(cmd.Context(), in)
			if err != nil {
				return err
			}
			if !watch {
				return printWorkflow(stdout, w, s.outputJSON)
			}
			return watchWorkflow(cmd.Context(), c, w.ID, stdout, stderr, s.outputJSON)
		}),
	}
	cmd.Flags().StringVar(&file, "file", "", "the workflow as JSON (- for standard input)")
	cmd.Flags().BoolVar(&start, "start", false, "start it at once")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "watch it until it finishes (as 'workflow watch', with its exit status)")
	return cmd
}

func workflowListCmd(stdout io.Writer, with runner) *cobra.Command {
	var o client.WorkflowListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List workflows, newest first",
		Args:  exactArgs(0),
		RunE: with(func(cmd *cobra.Command, _ []string, c *client.Client, s clientSettings) error {
			page, err := c.ListWorkflows(cmd.Context(), &o)
			if err != nil {
				return err
			}
			if s.outputJSON {
				return printJSON(stdout, page)
			}
			if err := printWorkflows(stdout, page.Workflows); err != nil {
				return err
			}
			if page.NextBefore != "" {
				fmt.Fprintf(stdout, "more: --before %s\n", page.NextBefore)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&o.Status, "status", "", "only workflows in this status: pending, running, completed, failed, cancelled")
	cmd.Flags().IntVar(&o.Limit, "limit", 0, "page size (default 50)")
	cmd.Flags().StringVar(&o.Before, "before", "", "continue after a previous page")
	return cmd
}

// workflowPoll is how often `workflow watch` reads the workflow.
var workflowPoll = 500 * time.Millisecond

// watchWorkflow prints a line on stderr for each change of the workflow's
// or a step's status until it finishes, then the workflow on stdout, and
// returns its outcome as the exit status.
func watchWorkflow(ctx context.Context, c *client.Client, id string, stdout, stderr io.Writer, asJSON bool) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	seen := map[string]string{}
	for {
		w, err := c.GetWorkflow(ctx, id)
		if err != nil {
			return err
		}
		if seen[""] != w.Status {
			fmt.Fprintf(stderr, "workflow %s\n", termText(w.Status))
			if w.Status == client.WorkflowPending && w.StartedAt == nil {
				fmt.Fprintf(stderr, "  (not started: nothing runs until 'compute workflow start %s')\n", termText(w.ID))
			}
			seen[""] = w.Status
		}
		for _, st := range w.Steps {
			if seen["step "+st.ID] != st.Status {
				fmt.Fprintf(stderr, "  step %s %s\n", termText(st.ID), termText(st.Status))
				seen["step "+st.ID] = st.Status
			}
		}
		if w.Terminal() {
			if err := printWorkflow(stdout, w, asJSON); err != nil {
				return err
			}
			switch w.Status {
			case client.WorkflowFailed:
				return &exitError{code: exitFailed, err: fmt.Errorf("workflow %s failed: %s", w.ID, w.Error)}
			case client.WorkflowCancelled:
				return &exitError{code: exitCancelled, err: fmt.Errorf("workflow %s was cancelled", w.ID)}
			}
			return nil
		}
		t := time.NewTimer(workflowPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
