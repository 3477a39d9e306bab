package comfyfake

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// graph is an API-format prompt (executors.md §1.2): node id → class_type
// and inputs, in the order the client sent them.
type graph struct {
	order []string
	nodes map[string]*gnode
	// raw is the prompt as received (numbers kept as sent), echoed in
	// /queue and /history; validation writes converted values back into
	// it, as execution.py validate_inputs does.
	raw map[string]any
}

type gnode struct {
	classType string
	hasClass  bool
	inputs    map[string]any
}

// parseGraph reads the "prompt" object of a POST /prompt body.
func parseGraph(data json.RawMessage) (*graph, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("prompt is not an object: %w", err)
	}
	order, err := objectKeys(data)
	if err != nil {
		return nil, err
	}
	g := &graph{order: order, nodes: map[string]*gnode{}, raw: raw}
	for _, id := range order {
		n := &gnode{inputs: map[string]any{}}
		if obj, ok := raw[id].(map[string]any); ok {
			n.classType, n.hasClass = obj["class_type"].(string)
			if _, present := obj["class_type"]; present && !n.hasClass {
				n.classType, n.hasClass = fmt.Sprint(obj["class_type"]), true
			}
			if in, ok := obj["inputs"].(map[string]any); ok {
				n.inputs = in
			}
		}
		g.nodes[id] = n
	}
	return g, nil
}

// objectKeys returns the keys of a JSON object in document order (Python
// dicts keep it, and validation reports the first bad node in that order).
func objectKeys(data json.RawMessage) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("reading prompt: %w", err)
	}
	var keys []string
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("reading prompt: %w", err)
		}
		key, _ := tok.(string)
		if !seen[key] {
			keys = append(keys, key)
			seen[key] = true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, fmt.Errorf("reading prompt: %w", err)
		}
	}
	return keys, nil
}

// promptError is one error object of a 400 from POST /prompt (§1.2).
type promptError struct {
	Type      string         `json:"type"`
	Message   string         `json:"message"`
	Details   string         `json:"details"`
	ExtraInfo map[string]any `json:"extra_info"`
}

// nodeError is one entry of node_errors (§1.2).
type nodeError struct {
	Errors           []promptError `json:"errors"`
	DependentOutputs []string      `json:"dependent_outputs"`
	ClassType        string        `json:"class_type"`
}

// validation is execution.py validate_prompt's result.
type validation struct {
	err        *promptError
	outputs    []string
	nodeErrors map[string]*nodeError
}

type validated struct {
	ok      bool
	reasons []promptError
}

// validatePrompt reproduces execution.py validate_prompt (executors.md
// §1.2): unknown or missing class_type, no output node, then per output the
// recursive input checks; outputs that fail are dropped, and the prompt
// fails only when none is left.
func (s *Server) validatePrompt(g *graph, partial []string) validation {
	var outputs []string
	for _, id := range g.order {
		n := g.nodes[id]
		if !n.hasClass {
			return validation{err: &promptError{Type: "invalid_prompt", Message: "Cannot execute because a node is missing the class_type property.",
				Details: fmt.Sprintf("Node ID '#%s'", id), ExtraInfo: map[string]any{}}, nodeErrors: map[string]*nodeError{}}
		}
		class, ok := s.catalog[n.classType]
		if !ok {
			return validation{err: &promptError{Type: "invalid_prompt", Message: fmt.Sprintf("Cannot execute because node %s does not exist.", n.classType),
				Details: fmt.Sprintf("Node ID '#%s'", id), ExtraInfo: map[string]any{}}, nodeErrors: map[string]*nodeError{}}
		}
		if class.outputNode && (partial == nil || contains(partial, id)) {
			outputs = append(outputs, id)
		}
	}
	if len(outputs) == 0 {
		return validation{err: &promptError{Type: "prompt_no_outputs", Message: "Prompt has no outputs", ExtraInfo: map[string]any{}},
			nodeErrors: map[string]*nodeError{}}
	}
	var good []string
	var details []string
	nodeErrors := map[string]*nodeError{}
	done := map[string]validated{}
	for _, o := range outputs {
		v, err := s.validateInputs(g, o, done)
		if err != nil {
			v = validated{reasons: []promptError{{Type: "exception_during_validation", Message: "Exception when validating node",
				Details: err.Error(), ExtraInfo: map[string]any{"exception_type": "KeyError", "traceback": []string{}}}}}
			done[o] = v
		}
		if v.ok {
			good = append(good, o)
			continue
		}
		for _, r := range v.reasons {
			details = append(details, r.Message+": "+r.Details)
		}
		for _, id := range g.order {
			r, seen := done[id]
			if !seen || r.ok || len(r.reasons) == 0 {
				continue
			}
			if nodeErrors[id] == nil {
				nodeErrors[id] = &nodeError{Errors: r.reasons, DependentOutputs: []string{}, ClassType: g.nodes[id].classType}
			}
			nodeErrors[id].DependentOutputs = append(nodeErrors[id].DependentOutputs, o)
		}
	}
	if len(good) == 0 {
		return validation{err: &promptError{Type: "prompt_outputs_failed_validation", Message: "Prompt outputs failed validation",
			Details: strings.Join(details, "\n"), ExtraInfo: map[string]any{}}, nodeErrors: nodeErrors}
	}
	return validation{outputs: good, nodeErrors: nodeErrors}
}

// validateInputs is execution.py validate_inputs for one node; an error is
// a Python exception (a link to a node that does not exist).
func (s *Server) validateInputs(g *graph, id string, done map[string]validated) (validated, error) {
	if v, ok := done[id]; ok {
		return v, nil
	}
	// A provisional verdict ends the recursion on a cycle of links (which
	// then fails at execution, as ComfyUI's cycle check does).
	done[id] = validated{ok: true}
	n := g.nodes[id]
	class := s.catalog[n.classType]
	var reasons []promptError
	ok := true
	for _, spec := range class.inputs {
		val, present := n.inputs[spec.name]
		if !present {
			reasons = append(reasons, promptError{Type: "required_input_missing", Message: "Required input is missing",
				Details: spec.name, ExtraInfo: map[string]any{"input_name": spec.name}})
			continue
		}
		info := spec.config(s)
		if link, isList := val.([]any); isList {
			if len(link) != 2 {
				reasons = append(reasons, promptError{Type: "bad_linked_input", Message: "Bad linked input, must be a length-2 list of [node_id, slot_index]",
					Details: spec.name, ExtraInfo: map[string]any{"input_name": spec.name, "input_config": info, "received_value": val}})
				continue
			}
			from, slot, err := s.linkSource(g, link)
			if err != nil {
				return validated{}, err
			}
			received := s.catalog[g.nodes[from].classType].returns[slot]
			if received != spec.kind {
				reasons = append(reasons, promptError{Type: "return_type_mismatch", Message: "Return type mismatch between linked nodes",
					Details:   fmt.Sprintf("%s, received_type(%s) mismatch input_type(%s)", spec.name, received, spec.kind),
					ExtraInfo: map[string]any{"input_name": spec.name, "input_config": info, "received_type": received, "linked_node": val}})
				continue
			}
			inner, err := s.validateInputs(g, from, done)
			if err != nil {
				ok = false
				done[from] = validated{reasons: []promptError{{Type: "exception_during_inner_validation", Message: "Exception when validating inner node",
					Details: err.Error(), ExtraInfo: map[string]any{"input_name": spec.name, "input_config": info, "exception_message": err.Error(),
						"exception_type": "KeyError", "traceback": []string{}, "linked_node": val}}}}
				continue
			}
			if !inner.ok {
				ok = false
			}
			continue
		}
		if wrapped, isMap := val.(map[string]any); isMap {
			if inner, has := wrapped["__value__"]; has {
				val = inner
				n.inputs[spec.name] = val
			}
		}
		converted, err := convertInput(spec.kind, val)
		if err != nil {
			reasons = append(reasons, promptError{Type: "invalid_input_type", Message: fmt.Sprintf("Failed to convert an input value to a %s value", spec.kind),
				Details:   fmt.Sprintf("%s, %s, %s", spec.name, pyStr(val), err),
				ExtraInfo: map[string]any{"input_name": spec.name, "input_config": info, "received_value": val, "exception_message": err.Error()}})
			continue
		}
		switch spec.kind {
		case "FLOAT":
			n.inputs[spec.name] = pyFloat(converted.(float64)) // echoed as 2.0, as Python writes floats
		case "INT", "STRING":
			n.inputs[spec.name] = converted
		}
		if contains(class.validateArgs, spec.name) {
			continue
		}
		if r := rangeError(spec, info, converted); r != nil {
			reasons = append(reasons, *r)
		}
	}
	if class.validate != nil {
		for _, arg := range class.validateArgs {
			if msg := class.validate(s, n.inputs); msg != "" {
				reasons = append(reasons, promptError{Type: "custom_validation_failed", Message: "Custom validation failed for node",
					Details: arg + " - " + msg, ExtraInfo: map[string]any{"input_name": arg}})
			}
		}
	}
	v := validated{ok: ok && len(reasons) == 0, reasons: reasons}
	done[id] = v
	return v, nil
}

// linkSource resolves a [node_id, slot] link, failing like Python's
// KeyError/IndexError when it names no node or no output.
func (s *Server) linkSource(g *graph, link []any) (string, int, error) {
	from := pyStr(link[0])
	n, ok := g.nodes[from]
	if !ok {
		return "", 0, fmt.Errorf("'%s'", from)
	}
	slot, err := strconv.Atoi(pyStr(link[1]))
	if err != nil || slot < 0 || slot >= len(s.catalog[n.classType].returns) {
		return "", 0, fmt.Errorf("tuple index out of range")
	}
	return from, slot, nil
}

// rangeError is the min/max and list check of a literal input.
func rangeError(spec inputSpec, info []any, val any) *promptError {
	switch spec.kind {
	case "INT", "FLOAT":
		f := toFloat(val)
		if lo, ok := spec.extra["min"]; ok && f < toFloat(lo) {
			return &promptError{Type: "value_smaller_than_min", Message: fmt.Sprintf("Value %s smaller than min of %s", pyStr(val), pyStr(lo)),
				Details: spec.name, ExtraInfo: map[string]any{"input_name": spec.name, "input_config": info, "received_value": val}}
		}
		if hi, ok := spec.extra["max"]; ok && f > toFloat(hi) {
			return &promptError{Type: "value_bigger_than_max", Message: fmt.Sprintf("Value %s bigger than max of %s", pyStr(val), pyStr(hi)),
				Details: spec.name, ExtraInfo: map[string]any{"input_name": spec.name, "input_config": info, "received_value": val}}
		}
	case "COMBO":
		opts, _ := info[0].([]string)
		str, isStr := val.(string)
		if !isStr || !contains(opts, str) {
			quoted := make([]string, len(opts))
			for i, o := range opts {
				quoted[i] = "'" + o + "'"
			}
			list, config := "["+strings.Join(quoted, ", ")+"]", any(info)
			if len(opts) > 20 {
				list, config = fmt.Sprintf("(list of length %d)", len(opts)), nil
			}
			return &promptError{Type: "value_not_in_list", Message: "Value not in list",
				Details:   fmt.Sprintf("%s: '%s' not in %s", spec.name, pyStr(val), list),
				ExtraInfo: map[string]any{"input_name": spec.name, "input_config": config, "received_value": val}}
		}
	}
	return nil
}

// convertInput is validate_inputs' int()/float()/str() of a literal.
func convertInput(kind string, val any) (any, error) {
	switch kind {
	case "INT":
		switch v := val.(type) {
		case json.Number:
			if i, err := v.Int64(); err == nil {
				return i, nil
			}
			f, err := v.Float64()
			if err != nil {
				return nil, err
			}
			return int64(math.Trunc(f)), nil
		case string:
			i, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("invalid literal for int() with base 10: '%s'", v)
			}
			return i, nil
		case bool:
			if v {
				return int64(1), nil
			}
			return int64(0), nil
		}
		return nil, fmt.Errorf("int() argument must be a string, a bytes-like object or a real number, not '%s'", pyType(val))
	case "FLOAT":
		switch v := val.(type) {
		case json.Number:
			return v.Float64()
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return nil, fmt.Errorf("could not convert string to float: '%s'", v)
			}
			return f, nil
		}
		return nil, fmt.Errorf("float() argument must be a string or a real number, not '%s'", pyType(val))
	case "STRING":
		return pyStr(val), nil
	}
	return val, nil
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case int:
		return float64(x)
	case float64:
		return x
	case pyFloat:
		return float64(x)
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return 0
}

// pyStr formats a value the way Python's str() would for the messages.
func pyStr(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return pyFloat(x).String()
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	}
	return fmt.Sprint(v)
}

func pyType(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case map[string]any:
		return "dict"
	case []any:
		return "list"
	}
	return fmt.Sprintf("%T", v)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// signatures returns each node's cache key: its class, its literal inputs
// and its inputs' signatures, plus the file's hash for LoadImage (its
// IS_CHANGED). Equal signatures are what ComfyUI's classic cache treats as
// "already computed" (executors.md §1.7 caching).
func (s *Server) signatures(g *graph) map[string]string {
	sigs := map[string]string{}
	var sig func(id string) string
	sig = func(id string) string {
		if v, ok := sigs[id]; ok {
			return v
		}
		sigs[id] = "cycle:" + id
		n := g.nodes[id]
		parts := map[string]any{"class": n.classType}
		for name, val := range n.inputs {
			if link, ok := val.([]any); ok && len(link) == 2 {
				if _, exists := g.nodes[pyStr(link[0])]; exists {
					parts[name] = []string{sig(pyStr(link[0])), pyStr(link[1])}
					continue
				}
			}
			parts[name] = val
		}
		if n.classType == "LoadImage" {
			data, _ := s.files.get(annotated(pyStr(n.inputs["image"]), dirInput))
			sum := sha256.Sum256(data)
			parts["is_changed"] = hex.EncodeToString(sum[:])
		}
		encoded, _ := json.Marshal(parts)
		sum := sha256.Sum256(encoded)
		sigs[id] = hex.EncodeToString(sum[:])
		return sigs[id]
	}
	for _, id := range g.order {
		sig(id)
	}
	return sigs
}

// pyFloat is a float encoded as Python's json module writes it: 1.0, not 1.
type pyFloat float64

// String is Python's repr of the float.
func (f pyFloat) String() string {
	s := strconv.FormatFloat(float64(f), 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEn") {
		s += ".0"
	}
	return s
}

// MarshalJSON writes the float with a decimal point.
func (f pyFloat) MarshalJSON() ([]byte, error) { return []byte(f.String()), nil }
