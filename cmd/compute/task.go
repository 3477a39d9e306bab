package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/computeserver/compute/client"
)

// taskCmd is `compute task …`: the API's task routes through the Go client.
func taskCmd(stdout, stderr io.Writer) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Create, inspect, watch and change tasks on a server (COMPUTE_URL, COMPUTE_API_KEY)",
		Long: "Talks to a running server: COMPUTE_URL (default " + defaultServerURL + ") and COMPUTE_API_KEY, or --url and --api-key, " +
			"or url and api_key in $XDG_CONFIG_HOME/compute/config.json (~/.config/compute/config.json). Exit statuses: docs/cli.md.",
	}
	cf.register(cmd)
	with := cf.runner(stderr)
	one := func(use, short string, call func(*client.Client, context.Context, string) (*client.Task, error)) *cobra.Command {
		return idCommand(use+" <task id>", short, with, call, func(t *client.Task, asJSON bool) error { return printTask(stdout, t, asJSON) })
	}
	cmd.AddCommand(
		taskCreateCmd(stdout, stderr, with),
		one("get", "Show a task", (*client.Client).Get),
		taskListCmd(stdout, stderr, with),
		taskWatchCmd(stdout, stderr, with),
		one("cancel", "Cancel a pending or executing task", (*client.Client).Cancel),
		one("retry", "Run a failed or cancelled task again", (*client.Client).Retry),
		taskPatchCmd(stdout, with),
		&cobra.Command{Use: "delete <task id>", Short: "Delete a finished task with its events and artifacts", Args: exactArgs(1),
			RunE: with(func(cmd *cobra.Command, args []string, c *client.Client, _ clientSettings) error {
				if err := c.Delete(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintln(stdout, "deleted", args[0])
				return nil
			})},
		taskResultCmd(stdout, with),
	)
	return cmd
}

// exactArgs is cobra.ExactArgs as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("%w (usage: %s)", err, cmd.UseLine())}
		}
		return nil
	}
}

func taskCreateCmd(stdout, stderr io.Writer, with runner) *cobra.Command {
	var (
		fields            []string
		file, idempotency string
		watch             bool
	)
	cmd := &cobra.Command{
		Use:   "create <task type>",
		Short: "Create a task from --field k=v (a string), --field k:=JSON (a number, bool, list, object, null) and --file body.json",
		Example: `  compute task create echo --field message=hello
  compute task create generation --field prompt="a red dress" --field width:=512 --field seed:=42 --watch
  compute task create generation --file body.json --field priority:=5`,
		Args: exactArgs(1),
		RunE: with(func(cmd *cobra.Command, args []string, c *client.Client, s clientSettings) error {
			body, err := readBody(file, fields, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if typ, ok := body["task_type"]; ok && typ != args[0] {
				return usagef("the body names task_type %v, the command line %q", typ, args[0])
			}
			t, err := c.Create(cmd.Context(), client.TaskCreate{Type: args[0], Fields: body, IdempotencyKey: idempotency})
			if err != nil {
				return err
			}
			if !watch {
				return printTask(stdout, t, s.outputJSON)
			}
			return watchTask(cmd.Context(), c, t.ID, stdout, stderr, s.outputJSON)
		}),
	}
	cmd.Flags().StringArrayVarP(&fields, "field", "f", nil, "a field: name=text, or name:=JSON (repeatable; wins over --file)")
	cmd.Flags().StringVar(&file, "file", "", "a JSON object with the body (- for standard input)")
	cmd.Flags().StringVar(&idempotency, "idempotency-key", "", "repeating a create with this key returns the first task")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "watch the task until it finishes (as 'task watch', with its exit status)")
	return cmd
}

// idCommand is a command that calls the API with one id and prints what it
// answers.
func idCommand[T any](use, short string, with runner, call func(*client.Client, context.Context, string) (T, error),
	print func(T, bool) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: exactArgs(1),
		RunE: with(func(cmd *cobra.Command, args []string, c *client.Client, s clientSettings) error {
			v, err := call(c, cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return print(v, s.outputJSON)
		})}
}

// readFile reads --file, standard input for "-".
func readFile(file string, stdin io.Reader) ([]byte, error) {
	var raw []byte
	var err error
	if file == "-" {
		raw, err = io.ReadAll(stdin)
	} else {
		raw, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, usagef("--file: %w", err)
	}
	return raw, nil
}

// readBody builds a JSON object from a file (or standard input for "-")
// and --field values: name=text is a string, name:=JSON any JSON value.
func readBody(file string, fields []string, stdin io.Reader) (map[string]any, error) {
	body := map[string]any{}
	if file != "" {
		raw, err := readFile(file, stdin)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, &body); err != nil || body == nil {
			return nil, usagef("--file %s: want a JSON object", file)
		}
	}
	for _, f := range fields {
		name, value, ok := strings.Cut(f, "=")
		if !ok || name == "" || name == ":" {
			return nil, usagef("--field %q: want name=text or name:=JSON", f)
		}
		if n, isJSON := strings.CutSuffix(name, ":"); isJSON {
			var v any
			if err := json.Unmarshal([]byte(value), &v); err != nil {
				return nil, usagef("--field %s:=%s: not JSON (%v); for text write %s=%s", n, value, err, n, value)
			}
			body[n] = v
			continue
		}
		body[name] = value
	}
	return body, nil
}

func taskListCmd(stdout, stderr io.Writer, with runner) *cobra.Command {
	var (
		o        client.ListOptions
		statuses []string
		all      bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks, newest first",
		Args:  exactArgs(0),
		RunE: with(func(cmd *cobra.Command, _ []string, c *client.Client, s clientSettings) error {
			for _, st := range statuses {
				o.Statuses = append(o.Statuses, client.Status(st))
			}
			var tasks []*client.Task
			next := ""
			if all {
				for t, err := range c.All(cmd.Context(), &o) {
					if err != nil {
						return err
					}
					tasks = append(tasks, t)
				}
			} else {
				page, err := c.List(cmd.Context(), &o)
				if err != nil {
					return err
				}
				tasks, next = page.Items, page.NextCursor
			}
			if s.outputJSON {
				if tasks == nil {
					tasks = []*client.Task{}
				}
				return printJSON(stdout, client.TaskPage{Items: tasks, NextCursor: next})
			}
			if err := printTasks(stdout, tasks); err != nil {
				return err
			}
			if next != "" {
				fmt.Fprintf(stderr, "more: --cursor %s (or --all)\n", next)
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.Types, "type", nil, "only tasks of this type (repeatable)")
	f.StringArrayVar(&statuses, "status", nil, "only tasks in this status: pending, executing, completed, failed, cancelled (repeatable)")
	f.StringArrayVar(&o.Queues, "queue", nil, "only tasks in this queue (repeatable)")
	f.StringVar(&o.TenantID, "tenant", "", "only tasks of this tenant")
	f.IntVar(&o.Limit, "limit", 0, "page size (server default 50, at most 500)")
	f.StringVar(&o.Cursor, "cursor", "", "continue after a previous page")
	f.BoolVar(&all, "all", false, "every page")
	return cmd
}

func taskWatchCmd(stdout, stderr io.Writer, with runner) *cobra.Command {
	return &cobra.Command{
		Use:   "watch <task id>",
		Short: "Show a task's progress live until it finishes; exit 0 completed, 1 failed, 2 cancelled",
		Args:  exactArgs(1),
		RunE: with(func(cmd *cobra.Command, args []string, c *client.Client, s clientSettings) error {
			return watchTask(cmd.Context(), c, args[0], stdout, stderr, s.outputJSON)
		}),
	}
}

// watchTask shows a task's events on stderr until it finishes, prints the
// task on stdout and returns its outcome as the exit status.
func watchTask(ctx context.Context, c *client.Client, id string, stdout, stderr io.Writer, asJSON bool) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	bar := newProgress(stderr)
	var werr error
	for ev, err := range c.Watch(ctx, id, nil) {
		if err != nil {
			werr = err
			break
		}
		bar.update(ev)
	}
	bar.done()
	if werr != nil {
		return werr
	}
	t, err := c.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := printTask(stdout, t, asJSON); err != nil {
		return err
	}
	switch t.Status {
	case client.StatusFailed:
		return &exitError{code: exitFailed, err: fmt.Errorf("task %s failed: %s (%s)", t.ID, t.ErrorMessage, t.ErrorCategory)}
	case client.StatusCancelled:
		return &exitError{code: exitCancelled, err: fmt.Errorf("task %s was cancelled", t.ID)}
	}
	return nil
}

func taskPatchCmd(stdout io.Writer, with runner) *cobra.Command {
	var (
		fields []string
		file   string
	)
	cmd := &cobra.Command{
		Use:     "patch <task id>",
		Short:   "Change a pending task: --field k=v, --field k:=JSON (null clears webhook_url and webhook_events), --file",
		Example: `  compute task patch <id> --field priority:=10 --field prompt="a blue dress"`,
		Args:    exactArgs(1),
		RunE: with(func(cmd *cobra.Command, args []string, c *client.Client, s clientSettings) error {
			body, err := readBody(file, fields, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if len(body) == 0 {
				return usagef("nothing to change: give --field or --file")
			}
			t, err := c.Patch(cmd.Context(), args[0], client.TaskPatch{Fields: body})
			if err != nil {
				return err
			}
			return printTask(stdout, t, s.outputJSON)
		}),
	}
	cmd.Flags().StringArrayVarP(&fields, "field", "f", nil, "a field: name=text, or name:=JSON (repeatable; wins over --file)")
	cmd.Flags().StringVar(&file, "file", "", "a JSON object with the changes (- for standard input)")
	return cmd
}

func taskResultCmd(stdout io.Writer, with runner) *cobra.Command {
	var dir string
	var overwrite bool
	cmd := &cobra.Command{
		Use:   "result <task id>",
		Short: "Show a task's outputs; --download DIR saves its artifacts there",
		Args:  exactArgs(1),
		RunE: with(func(cmd *cobra.Command, args []string, c *client.Client, s clientSettings) error {
			r, err := c.Result(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if dir == "" {
				return printResult(stdout, r, s.outputJSON)
			}
			if r.Status != client.StatusCompleted || r.Result == nil {
				return fmt.Errorf("task %s is %s: only a completed task has artifacts to download", r.TaskID, r.Status)
			}
			saved, err := downloadAll(cmd.Context(), c, r.Result.Artifacts, dir, overwrite)
			if s.outputJSON {
				if jerr := printJSON(stdout, saved); jerr != nil && err == nil {
					err = jerr
				}
			} else {
				for _, f := range saved {
					fmt.Fprintf(stdout, "%s\t%d bytes\t%s\n", termText(f.Path), f.Size, termText(f.Key))
				}
			}
			return err
		}),
	}
	cmd.Flags().StringVar(&dir, "download", "", "save the artifacts in this directory (made if missing)")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace files of the same names in the --download directory (by default they are kept and the download stops)")
	return cmd
}

// savedFile is one downloaded artifact.
type savedFile struct {
	Key  string `json:"key"`
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// downloadAll saves artifacts in dir under safe names (artifactName),
// through an os.Root, so no artifact name can write outside dir.
func downloadAll(ctx context.Context, c *client.Client, arts []client.Artifact, dir string, overwrite bool) ([]savedFile, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, usagef("--download: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, usagef("--download: %w", err)
	}
	defer root.Close()
	saved := []savedFile{}
	used := map[string]bool{}
	for i, a := range arts {
		name := artifactName(a.Key, i, used)
		flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
		if overwrite {
			flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		}
		f, err := root.OpenFile(name, flags, 0o644)
		if errors.Is(err, fs.ErrExist) {
			return saved, fmt.Errorf("saving %s: %s already exists in %s (--overwrite replaces files)", a.Key, name, dir)
		}
		if err != nil {
			return saved, fmt.Errorf("saving %s: %w", a.Key, err)
		}
		n, err := c.Download(ctx, a, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = root.Remove(name) // no partial file left behind
			return saved, fmt.Errorf("downloading %s: %w", a.Key, err)
		}
		saved = append(saved, savedFile{Key: a.Key, Path: filepath.Join(dir, name), Size: n})
	}
	return saved, nil
}

// artifactName is a file name for an artifact: the last element of its
// key with only letters, digits, '.', '-' and '_' (others become '_'), no
// leading dot, at most 128 bytes; "artifact-<n>" when nothing is left; a
// name already used gets "<k>-" in front, k = 2, 3, … until it is unused. It never names a directory or a
// path: an artifact called "../../.bashrc" is saved as "bashrc".
func artifactName(key string, i int, used map[string]bool) string {
	base := key
	if j := strings.LastIndexAny(base, `/\`); j >= 0 {
		base = base[j+1:]
	}
	var b strings.Builder
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := strings.TrimLeft(b.String(), ".")
	if len(name) > 128 {
		name = name[len(name)-128:]
	}
	if strings.Trim(name, "_") == "" {
		name = fmt.Sprintf("artifact-%d", i+1)
	}
	for k, base := 2, name; used[name]; k++ {
		name = fmt.Sprintf("%d-%s", k, base)
	}
	used[name] = true
	return name
}
