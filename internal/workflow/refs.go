package workflow

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// A reference is {{steps.<id>.<path>}}: path is dot-separated keys and
// list indexes into the referred step's result (for example
// {{steps.gen.artifacts.0.url}}); the path task_id is the step's task id.
var refPattern = regexp.MustCompile(`\{\{\s*steps\.([A-Za-z0-9_-]+)((?:\.[^.{}\s]+)*)\s*\}\}`)

// Reference is one reference found in a step's body.
type Reference struct {
	Text string
	Step string
	Path []string
}

// References returns the references in a decoded JSON value, in a stable
// order.
func References(v any) []Reference {
	var out []Reference
	walkStrings(v, func(s string) {
		for _, m := range refPattern.FindAllStringSubmatch(s, -1) {
			out = append(out, Reference{Text: m[0], Step: m[1], Path: splitPath(m[2])})
		}
	})
	return out
}

func splitPath(p string) []string {
	p = strings.TrimPrefix(p, ".")
	if p == "" {
		return nil
	}
	return strings.Split(p, ".")
}

func walkStrings(v any, f func(string)) {
	switch x := v.(type) {
	case string:
		f(x)
	case []any:
		for _, e := range x {
			walkStrings(e, f)
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walkStrings(x[k], f)
		}
	}
}

// Fill replaces the references in body with values from docs (a step's
// document by step id: its result, with task_id): a string that is
// exactly one reference becomes the value, with its JSON type; a
// reference inside a longer string is replaced by the value as text
// (strings as they are, other values as JSON). A path that leads nowhere
// is an error.
func Fill(body json.RawMessage, docs map[string]any) (json.RawMessage, error) {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("decoding the step's task: %w", err)
	}
	out, err := fill(v, docs)
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

func fill(v any, docs map[string]any) (any, error) {
	switch x := v.(type) {
	case string:
		return fillString(x, docs)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			f, err := fill(e, docs)
			if err != nil {
				return nil, err
			}
			out[i] = f
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			f, err := fill(e, docs)
			if err != nil {
				return nil, err
			}
			out[k] = f
		}
		return out, nil
	}
	return v, nil
}

func fillString(s string, docs map[string]any) (any, error) {
	if m := refPattern.FindStringSubmatchIndex(s); m != nil && m[0] == 0 && m[1] == len(s) {
		return lookup(s, s[m[2]:m[3]], splitPath(s[m[4]:m[5]]), docs)
	}
	var firstErr error
	out := refPattern.ReplaceAllStringFunc(s, func(ref string) string {
		sm := refPattern.FindStringSubmatch(ref)
		val, err := lookup(ref, sm[1], splitPath(sm[2]), docs)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			return ""
		}
		if str, ok := val.(string); ok {
			return str
		}
		raw, err := json.Marshal(val)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return string(raw)
	})
	return out, firstErr
}

// lookup follows path into the document of step.
func lookup(text, step string, path []string, docs map[string]any) (any, error) {
	cur, ok := docs[step]
	if !ok {
		return nil, fmt.Errorf("%s: step %q has no result", text, step)
	}
	for i, key := range path {
		switch x := cur.(type) {
		case map[string]any:
			v, ok := x[key]
			if !ok {
				return nil, fmt.Errorf("%s: %q has no field %q", text, strings.Join(append([]string{step}, path[:i]...), "."), key)
			}
			cur = v
		case []any:
			n, err := strconv.Atoi(key)
			if err != nil || n < 0 || n >= len(x) {
				return nil, fmt.Errorf("%s: %q has %d items, no item %q", text, strings.Join(append([]string{step}, path[:i]...), "."), len(x), key)
			}
			cur = x[n]
		default:
			return nil, fmt.Errorf("%s: %q is not an object or a list", text, strings.Join(append([]string{step}, path[:i]...), "."))
		}
	}
	return cur, nil
}
