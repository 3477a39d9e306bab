package comfyui

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// A template is an API-format ComfyUI graph (executors.md §1.2, §1.4:
// {node_id: {class_type, inputs}}) read from `<name>.json` in the
// workflows directory. Its placeholders are JSON string values that are
// exactly:
//
//   - "{{field}}": replaced by the task's field with its JSON type (a
//     number stays a number); a list is wrapped as {"__value__": [...]},
//     since ComfyUI reads a bare two-element list as a link (§1.2).
//   - "{{input:field}}": the field is an image URL; the image is uploaded
//     with POST /upload/image to the server the prompt goes to, and the
//     name the server returns takes the placeholder's place.
//     "{{input:field.N}}" is the URL at index N (from 0) of a list field
//     (an editing task's reference_image_urls.0).
//
// "{{batch_size}}" is not a task's field but the executor's: the number
// of jobs the prompt runs (1, or a batch's size, see Batcher). A template
// with it is batchable.
//
// Substitution is one pass: a field's value is never scanned for
// placeholders itself.
type template struct {
	name  string
	graph map[string]any
	// fields and inputs are the fields the placeholders name, sorted.
	fields, inputs []string
}

// MissingFieldsError is a template that needs fields the task lacks.
type MissingFieldsError struct {
	// Workflow is the template's name; Fields the missing fields, sorted.
	Workflow string
	Fields   []string
}

// Error implements error.
func (e *MissingFieldsError) Error() string {
	return fmt.Sprintf("workflow %s needs field(s) the task lacks: %s", e.Workflow, strings.Join(e.Fields, ", "))
}

// inputRef stands for an upload in a filled graph until the server is
// known (resolve).
type inputRef struct{ field string }

// batchRef stands for "{{batch_size}}" in a filled graph until the batch's
// size is known (resolveBatch).
type batchRef struct{}

const (
	placeholderOpen  = "{{"
	placeholderClose = "}}"
	inputPrefix      = "input:"
	// fieldBatchSize is the placeholder the executor fills with the
	// prompt's batch size.
	fieldBatchSize = "batch_size"
)

// batchable reports whether the template takes a batch size.
func (t *template) batchable() bool { return slices.Contains(t.fields, fieldBatchSize) }

// loadTemplates reads every `<name>.json` in dir.
func loadTemplates(dir string) (map[string]*template, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading workflows: %w", err)
	}
	out := map[string]*template{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() || name == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading workflow %s: %w", name, err)
		}
		t, err := parseTemplate(name, data)
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// parseTemplate reads one template and lists its placeholders.
func parseTemplate(name string, data []byte) (*template, error) {
	var graph map[string]any
	if err := decodeNumbers(data, &graph); err != nil {
		return nil, fmt.Errorf("workflow %s: not a JSON object of nodes: %w", name, err)
	}
	if len(graph) == 0 {
		return nil, fmt.Errorf("workflow %s: no nodes", name)
	}
	for id, n := range graph {
		node, ok := n.(map[string]any)
		if _, hasClass := node["class_type"].(string); !ok || !hasClass {
			return nil, fmt.Errorf("workflow %s: node %q has no class_type (is it in API format?)", name, id)
		}
	}
	t := &template{name: name, graph: graph}
	fields, inputs := map[string]bool{}, map[string]bool{}
	walkStrings(graph, func(s string) {
		if f, ok := placeholder(s); ok {
			if in, isInput := strings.CutPrefix(f, inputPrefix); isInput {
				inputs[in] = true
			} else {
				fields[f] = true
			}
		}
	})
	t.fields, t.inputs = sortedKeys(fields), sortedKeys(inputs)
	return t, nil
}

// placeholder returns the field s names when s is exactly "{{field}}".
func placeholder(s string) (string, bool) {
	inner, ok := strings.CutPrefix(s, placeholderOpen)
	if !ok {
		return "", false
	}
	inner, ok = strings.CutSuffix(inner, placeholderClose)
	if !ok || inner == "" || strings.ContainsAny(inner, "{} ") {
		return "", false
	}
	return inner, true
}

// missing returns the placeholders' fields that fields lacks (absent or
// null, or a list too short for an input's index), sorted.
func (t *template) missing(fields map[string]json.RawMessage) []string {
	var out []string
	for _, f := range slices.Concat(t.fields, t.inputs) {
		if f == fieldBatchSize {
			continue // the executor's
		}
		if _, err := lookup(fields, f); err != nil {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// fill returns a copy of the graph with the "{{field}}" placeholders
// replaced and the "{{input:field}}" ones as inputRefs, and the URLs of
// the inputs by field. A missing field is an error naming every one.
func (t *template) fill(fields map[string]json.RawMessage) (map[string]any, map[string]string, error) {
	if m := t.missing(fields); len(m) > 0 {
		return nil, nil, &MissingFieldsError{Workflow: t.name, Fields: m}
	}
	values := make(map[string]any, len(t.fields))
	for _, f := range t.fields {
		if f == fieldBatchSize {
			values[f] = batchRef{}
			continue
		}
		var v any
		raw, _ := lookup(fields, f) // missing checked it
		if err := decodeNumbers(raw, &v); err != nil {
			return nil, nil, fmt.Errorf("field %s: %w", f, err)
		}
		if list, ok := v.([]any); ok {
			v = map[string]any{"__value__": list}
		}
		values[f] = v
	}
	urls := make(map[string]string, len(t.inputs))
	for _, f := range t.inputs {
		raw, _ := lookup(fields, f) // missing checked it
		var u string
		if err := json.Unmarshal(raw, &u); err != nil || u == "" {
			return nil, nil, fmt.Errorf("field %s: an input image must be a URL string", f)
		}
		urls[f] = u
	}
	filled := substitute(t.graph, func(leaf any) (any, bool) {
		s, _ := leaf.(string)
		f, ok := placeholder(s)
		if !ok {
			return nil, false
		}
		if in, isInput := strings.CutPrefix(f, inputPrefix); isInput {
			return inputRef{field: in}, true
		}
		return values[f], true
	})
	return filled.(map[string]any), urls, nil
}

// errMissing is a field lookup that finds nothing.
var errMissing = errors.New("missing")

// lookup returns the value of field f: a field's, or for "name.N" the
// element N of the list field name. Absent and null values are
// errMissing.
func lookup(fields map[string]json.RawMessage, f string) (json.RawMessage, error) {
	raw, ok := fields[f]
	if name, idx, indexed := strings.Cut(f, "."); !ok && indexed {
		n, err := strconv.Atoi(idx)
		if err != nil || n < 0 {
			return nil, errMissing
		}
		var list []json.RawMessage
		if json.Unmarshal(fields[name], &list) != nil || n >= len(list) {
			return nil, errMissing
		}
		raw, ok = list[n], true
	}
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, errMissing
	}
	return raw, nil
}

// resolve returns a copy of a filled graph with its inputRefs replaced by
// the uploaded names, for a prompt of one job.
func resolve(graph map[string]any, names map[string]string) map[string]any {
	return resolveBatch(graph, names, 1)
}

// resolveBatch returns a copy of a filled graph with its inputRefs
// replaced by the uploaded names and its batch size by size.
func resolveBatch(graph map[string]any, names map[string]string, size int) map[string]any {
	return substitute(graph, func(leaf any) (any, bool) {
		switch ref := leaf.(type) {
		case inputRef:
			return names[ref.field], true
		case batchRef:
			return size, true
		}
		return nil, false
	}).(map[string]any)
}

// substitute deep-copies v, replacing each leaf (a value that is not an
// object or a list) for which repl answers ok. Replacements are not walked
// (one pass).
func substitute(v any, repl func(leaf any) (any, bool)) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = substitute(e, repl)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = substitute(e, repl)
		}
		return out
	}
	if r, ok := repl(v); ok {
		return r
	}
	return v
}

// walkStrings calls fn on every string value under v.
func walkStrings(v any, fn func(string)) {
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	case []any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	case string:
		fn(x)
	}
}

// decodeNumbers decodes JSON keeping numbers exact (json.Number): seeds
// exceed float64's 2^53.
func decodeNumbers(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
