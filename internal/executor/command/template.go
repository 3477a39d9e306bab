package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/computeserver/compute/internal/executor"
)

// tmplRef is a template in an argument or an environment value:
// {{name}}, {{field:name}} or {{input:name}}.
var tmplRef = regexp.MustCompile(`\{\{\s*(?:(field|input):)?([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

// The built-in template names; any other {{name}} is a task field.
const (
	varTaskID     = "task_id"
	varTaskType   = "task_type"
	varAttempt    = "attempt"
	varOperation  = "operation"
	varWorkDir    = "work_dir"
	varOutputDir  = "output_dir"
	varInputDir   = "input_dir"
	varCheckpoint = "checkpoint"
	varFieldsFile = "fields_file"
)

func hasTemplate(s string) bool { return tmplRef.MatchString(s) }

// filler fills one job's templates.
type filler struct {
	job     *executor.Job
	builtin map[string]string
	fields  map[string]json.RawMessage
	inDir   string
	inputs  map[string]string // field → downloaded path
}

// newFiller returns the filler of job; dirs are its work, output and input
// directories, checkpoint the local path of its last checkpoint or "".
func newFiller(job *executor.Job, work, out, in, checkpoint string) (*filler, error) {
	fields := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(job.Fields)) > 0 && !bytes.Equal(bytes.TrimSpace(job.Fields), []byte("null")) {
		if err := json.Unmarshal(job.Fields, &fields); err != nil {
			return nil, executor.Errorf(executor.InvalidInput, "command: the task's fields are not a JSON object: %w", err)
		}
	}
	f := &filler{job: job, fields: fields, inDir: in, inputs: map[string]string{}, builtin: map[string]string{
		varTaskID: job.TaskID.String(), varTaskType: job.Type, varAttempt: strconv.Itoa(job.Attempt),
		varOperation: job.Operation, varWorkDir: work, varOutputDir: out, varInputDir: in,
		varCheckpoint: checkpoint, varFieldsFile: filepath.Join(work, "fields.json"),
	}}
	data := job.Fields
	if len(data) == 0 {
		data = []byte("{}")
	}
	if err := os.WriteFile(f.builtin[varFieldsFile], data, 0o600); err != nil {
		return nil, fmt.Errorf("command: writing fields file: %w", err)
	}
	return f, nil
}

// fill replaces every template in s. A field the task lacks is invalid
// input.
func (f *filler) fill(ctx context.Context, s string) (string, error) {
	var ferr error
	out := tmplRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := tmplRef.FindStringSubmatch(ref)
		kind, name := m[1], m[2]
		v, err := f.value(ctx, kind, name)
		if err != nil && ferr == nil {
			ferr = err
		}
		return v
	})
	return out, ferr
}

func (f *filler) value(ctx context.Context, kind, name string) (string, error) {
	if kind == "" {
		if v, ok := f.builtin[name]; ok {
			return v, nil
		}
	}
	raw, ok := f.fields[name]
	if !ok {
		return "", executor.Errorf(executor.InvalidInput, "command: the command needs field %q, which the task does not have", name)
	}
	if kind == "input" {
		return f.input(ctx, name, raw)
	}
	return fieldText(raw), nil
}

// fieldText is a field's value as an argument: a string as it is, null
// as "", a number or boolean as written, a list or object as JSON.
func fieldText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if t := bytes.TrimSpace(raw); bytes.Equal(t, []byte("null")) {
		return ""
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return string(raw)
	}
	return buf.String()
}

// input downloads the input at the URL of field name into the input
// directory and returns its path.
func (f *filler) input(ctx context.Context, name string, raw json.RawMessage) (string, error) {
	if p, ok := f.inputs[name]; ok {
		return p, nil
	}
	var url string
	if json.Unmarshal(raw, &url) != nil || url == "" {
		return "", executor.Errorf(executor.InvalidInput, "command: field %s is not a URL", name)
	}
	if f.job.OpenInput == nil {
		return "", executor.Errorf(executor.InvalidInput, "command: field %s is an input, which this task type cannot read", name)
	}
	data, err := f.job.OpenInput(ctx, url)
	if err != nil {
		return "", executor.Classify(executor.InvalidInput, fmt.Errorf("command: reading input %s: %w", name, err))
	}
	ext := path.Ext(strings.SplitN(strings.SplitN(url, "?", 2)[0], "#", 2)[0])
	if len(ext) > 8 || strings.ContainsAny(ext, "/\\:") {
		ext = ""
	}
	p := filepath.Join(f.inDir, name+ext)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return "", fmt.Errorf("command: writing input %s: %w", name, err)
	}
	f.inputs[name] = p
	return p, nil
}
