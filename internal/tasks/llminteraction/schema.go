package llminteraction

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

// A response schema is checked twice: at create, that it is one this
// package can apply (checkSchema), and on the model's answer (validate).
// The keywords understood are those structured-output APIs accept (OpenAI's
// strict subset, Gemini's responseJsonSchema): type (a name or a list),
// properties, required, additionalProperties, items, enum, const,
// minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf,
// minLength, maxLength, pattern, minItems, maxItems, anyOf, oneOf, allOf,
// and $ref to "#/$defs/NAME" (or "#/definitions/NAME"). Annotations
// (description, title, default, format…) are not checked.

// maxSchemaDepth bounds the nesting of a schema and of $ref chains.
const maxSchemaDepth = 64

// schemaChecker validates values against one root schema.
type schemaChecker struct {
	root map[string]any
	// patterns are the compiled patterns by source.
	patterns map[string]*regexp.Regexp
}

// checkSchema returns a checker for the root schema s: an object schema
// whose patterns compile and whose $refs resolve; else an error saying
// what is wrong.
func checkSchema(s map[string]any) (*schemaChecker, error) {
	// Numbers as JSON decodes them (float64), whoever built the map.
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("is not JSON: %w", err)
	}
	s = nil
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("is not a JSON object: %w", err)
	}
	if s["type"] != "object" {
		return nil, fmt.Errorf(`must be an object schema ("type": "object"), as structured output requires`)
	}
	c := &schemaChecker{root: s, patterns: map[string]*regexp.Regexp{}}
	if err := c.walk(s, "#", 0); err != nil {
		return nil, err
	}
	return c, nil
}

// walk checks a (sub)schema at path.
func (c *schemaChecker) walk(s map[string]any, path string, depth int) error {
	if depth > maxSchemaDepth {
		return fmt.Errorf("%s: nested more than %d levels", path, maxSchemaDepth)
	}
	for k, v := range s {
		at := path + "/" + k
		switch k {
		case "$ref":
			ref, ok := v.(string)
			if !ok {
				return fmt.Errorf("%s: must be a string", at)
			}
			if _, err := c.resolve(ref); err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
		case "pattern":
			p, ok := v.(string)
			if !ok {
				return fmt.Errorf("%s: must be a string", at)
			}
			re, err := regexp.Compile(p)
			if err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
			c.patterns[p] = re
		case "type":
			for _, t := range typeNames(v) {
				if !slices.Contains([]string{"object", "array", "string", "number", "integer", "boolean", "null"}, t) {
					return fmt.Errorf("%s: unknown type %q", at, t)
				}
			}
		case "properties", "$defs", "definitions":
			m, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("%s: must be an object", at)
			}
			for name, sub := range m {
				if err := c.sub(sub, at+"/"+name, depth); err != nil {
					return err
				}
			}
		case "items", "additionalProperties", "not":
			if _, ok := v.(bool); ok && k == "additionalProperties" {
				continue
			}
			if err := c.sub(v, at, depth); err != nil {
				return err
			}
		case "anyOf", "oneOf", "allOf":
			l, ok := v.([]any)
			if !ok || len(l) == 0 {
				return fmt.Errorf("%s: must be a non-empty list of schemas", at)
			}
			for i, sub := range l {
				if err := c.sub(sub, fmt.Sprintf("%s/%d", at, i), depth); err != nil {
					return err
				}
			}
		case "required":
			l, ok := v.([]any)
			if !ok {
				return fmt.Errorf("%s: must be a list of names", at)
			}
			for _, n := range l {
				if _, ok := n.(string); !ok {
					return fmt.Errorf("%s: must be a list of names", at)
				}
			}
		case "enum":
			if _, ok := v.([]any); !ok {
				return fmt.Errorf("%s: must be a list", at)
			}
		}
	}
	return nil
}

func (c *schemaChecker) sub(v any, path string, depth int) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: must be a schema (an object)", path)
	}
	return c.walk(m, path, depth+1)
}

// resolve finds the schema of a local $ref.
func (c *schemaChecker) resolve(ref string) (map[string]any, error) {
	for _, prefix := range []string{"#/$defs/", "#/definitions/"} {
		if name, ok := strings.CutPrefix(ref, prefix); ok {
			defs, _ := c.root[strings.TrimSuffix(strings.TrimPrefix(prefix, "#/"), "/")].(map[string]any)
			if s, ok := defs[name].(map[string]any); ok {
				return s, nil
			}
			return nil, fmt.Errorf("$ref %q names no schema", ref)
		}
	}
	if ref == "#" {
		return c.root, nil
	}
	return nil, fmt.Errorf("$ref %q: only #, #/$defs/NAME and #/definitions/NAME are supported", ref)
}

// validate returns the ways v breaks the root schema, each with its JSON
// path ("$.sizes[1]: …"), at most max of them.
func (c *schemaChecker) validate(v any, max int) []string {
	var out []string
	c.check(c.root, v, "$", 0, &out)
	if len(out) > max {
		out = out[:max]
	}
	return out
}

func (c *schemaChecker) check(s map[string]any, v any, path string, depth int, out *[]string) {
	fail := func(format string, a ...any) { *out = append(*out, path+": "+fmt.Sprintf(format, a...)) }
	if depth > maxSchemaDepth {
		fail("the schema nests too deep")
		return
	}
	if ref, ok := s["$ref"].(string); ok {
		if r, err := c.resolve(ref); err == nil {
			c.check(r, v, path, depth+1, out)
		}
	}
	if types := typeNames(s["type"]); len(types) > 0 && !slices.ContainsFunc(types, func(t string) bool { return isType(v, t) }) {
		fail("is %s, want %s", typeOf(v), strings.Join(types, " or "))
		return
	}
	if e, ok := s["enum"].([]any); ok && !slices.ContainsFunc(e, func(x any) bool { return equal(x, v) }) {
		fail("is %s, want one of %s", show(v), show(e))
	}
	if k, ok := s["const"]; ok && !equal(k, v) {
		fail("is %s, want %s", show(v), show(k))
	}
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		l, ok := s[k].([]any)
		if !ok {
			continue
		}
		matched := 0
		for _, sub := range l {
			var errs []string
			if m, ok := sub.(map[string]any); ok {
				c.check(m, v, path, depth+1, &errs)
			}
			if len(errs) == 0 {
				matched++
			} else if k == "allOf" {
				*out = append(*out, errs...)
			}
		}
		switch {
		case k == "anyOf" && matched == 0:
			fail("matches none of anyOf")
		case k == "oneOf" && matched != 1:
			fail("matches %d of oneOf, want exactly 1", matched)
		}
	}
	switch x := v.(type) {
	case map[string]any:
		c.object(s, x, path, depth, out)
	case []any:
		if n, ok := num(s["minItems"]); ok && float64(len(x)) < n {
			fail("has %d items, want at least %g", len(x), n)
		}
		if n, ok := num(s["maxItems"]); ok && float64(len(x)) > n {
			fail("has %d items, want at most %g", len(x), n)
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range x {
				c.check(items, e, fmt.Sprintf("%s[%d]", path, i), depth+1, out)
			}
		}
	case string:
		n := float64(utf8.RuneCountInString(x))
		if m, ok := num(s["minLength"]); ok && n < m {
			fail("has %g characters, want at least %g", n, m)
		}
		if m, ok := num(s["maxLength"]); ok && n > m {
			fail("has %g characters, want at most %g", n, m)
		}
		if p, ok := s["pattern"].(string); ok && c.patterns[p] != nil && !c.patterns[p].MatchString(x) {
			fail("%s does not match the pattern %s", show(x), p)
		}
	case float64:
		if m, ok := num(s["minimum"]); ok && x < m {
			fail("is %g, want at least %g", x, m)
		}
		if m, ok := num(s["maximum"]); ok && x > m {
			fail("is %g, want at most %g", x, m)
		}
		if m, ok := num(s["exclusiveMinimum"]); ok && x <= m {
			fail("is %g, want more than %g", x, m)
		}
		if m, ok := num(s["exclusiveMaximum"]); ok && x >= m {
			fail("is %g, want less than %g", x, m)
		}
		if m, ok := num(s["multipleOf"]); ok && m > 0 && math.Abs(math.Remainder(x, m)) > 1e-9 {
			fail("is %g, want a multiple of %g", x, m)
		}
	}
}

// object checks an object's properties, required names and extra keys.
func (c *schemaChecker) object(s, x map[string]any, path string, depth int, out *[]string) {
	props, _ := s["properties"].(map[string]any)
	if req, ok := s["required"].([]any); ok {
		for _, n := range req {
			if name, _ := n.(string); name != "" {
				if _, ok := x[name]; !ok {
					*out = append(*out, fmt.Sprintf("%s: lacks the required property %q", path, name))
				}
			}
		}
	}
	keys := make([]string, 0, len(x))
	for k := range x {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		at := path + "." + k
		if sub, ok := props[k].(map[string]any); ok {
			c.check(sub, x[k], at, depth+1, out)
			continue
		}
		switch ap := s["additionalProperties"].(type) {
		case bool:
			if !ap {
				*out = append(*out, fmt.Sprintf("%s: is not a property the schema allows", at))
			}
		case map[string]any:
			c.check(ap, x[k], at, depth+1, out)
		}
	}
}

// typeNames reads a type keyword: a name or a list of names.
func typeNames(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// isType reports whether a decoded JSON value is of JSON Schema type t.
func isType(v any, t string) bool {
	switch t {
	case "integer":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f)
	case "number":
		_, ok := v.(float64)
		return ok
	}
	return typeOf(v) == t
}

// typeOf names a decoded JSON value's type.
func typeOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func num(v any) (float64, bool) {
	f, ok := v.(float64)
	return f, ok
}

func equal(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// show is a value as short JSON for a message.
func show(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(raw) > 80 {
		return string(raw[:80]) + "…"
	}
	return string(raw)
}
