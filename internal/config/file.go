package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ExecutorEntry is one executor of the config file:
// `executors: {NAME: {type: KIND, …settings}}`.
type ExecutorEntry struct {
	// Type is the executor type (comfyui, fal, replicate, cog, openai,
	// gemini, command, local, mock).
	Type string
	// Settings are the entry's other keys as JSON, with ${VAR}s expanded;
	// the executor's package decodes them strictly. They may hold
	// secrets: never log them.
	Settings json.RawMessage
	// Line is the entry's line in the file.
	Line int
	// Dir is the file's directory, which the executor's relative paths
	// are relative to.
	Dir string
}

// TypeEntry is one task type of the config file's `types:`.
type TypeEntry struct {
	// Executor runs the type's tasks that name no provider_type.
	Executor string
	// Fallback are executors that take over when Executor is unavailable.
	Fallback []string
	// Line is the entry's line in the file.
	Line int
}

// Load returns the defaults, overridden by the YAML file at path (none when
// path is ""), overridden by the environment. It does not validate.
func Load(path string) (Config, error) {
	c := Default()
	if path != "" {
		if err := c.readFile(path); err != nil {
			return c, err
		}
	}
	err := c.applyEnv()
	return c, err
}

// fileError is a problem of the config file at a line ("compute.yaml:12:
// executors.gpu: …"); line 0 when unknown.
func fileError(path string, line int, key, format string, args ...any) error {
	where := path
	if line > 0 {
		where = fmt.Sprintf("%s:%d", path, line)
	}
	if key != "" {
		where += ": " + key
	}
	return fmt.Errorf("config file %s: %w", where, fmt.Errorf(format, args...))
}

// readFile applies the file at path to c.
func (c *Config) readFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	c.File = abs
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // an empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fileError(path, root.Line, "", "the file must be a mapping of settings")
	}
	expanded := map[*yaml.Node]bool{}
	if err := expandEnv(path, root, "", expanded); err != nil {
		return err
	}
	fields := settingFields()
	dir := filepath.Dir(abs)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "executors":
			if c.Executors, err = readExecutors(path, dir, v); err != nil {
				return err
			}
		case "types":
			if c.Types, err = readTypes(path, v); err != nil {
				return err
			}
		default:
			idx, ok := fields[k.Value]
			if !ok {
				return fileError(path, k.Line, k.Value, "unknown setting (known: %s)", strings.Join(knownKeys(fields), ", "))
			}
			dst := reflect.ValueOf(c).Elem().FieldByIndex(idx).Addr().Interface()
			if err := v.Decode(dst); err != nil {
				if expanded[v] {
					// The message would quote a value from the
					// environment, which may be a secret.
					return fileError(path, v.Line, k.Value, "the value from the environment is not a valid %s", reflect.TypeOf(dst).Elem())
				}
				return fileError(path, v.Line, k.Value, "%v", err)
			}
		}
	}
	if c.DataDir != "" && !filepath.IsAbs(c.DataDir) && isSet(root, "data_dir") {
		c.DataDir = filepath.Join(dir, c.DataDir)
	}
	return nil
}

// settingFields maps the file's setting names to the Config fields.
func settingFields() map[string][]int {
	out := map[string][]int{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		if tag := f.Tag.Get("yaml"); tag != "" && tag != "-" {
			out[tag] = f.Index
		}
	}
	return out
}

func knownKeys(fields map[string][]int) []string {
	keys := []string{"executors", "types"}
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// isSet reports whether the mapping m has key.
func isSet(m *yaml.Node, key string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${VAR} in every scalar value under n by the variable's
// value, marking the node in expanded; an unset variable is an error naming
// it and where it is used. The values are never part of an error.
func expandEnv(path string, n *yaml.Node, key string, expanded map[*yaml.Node]bool) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if !envRef.MatchString(n.Value) {
			return nil
		}
		var missing string
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			name := ref[2 : len(ref)-1]
			v, ok := os.LookupEnv(name)
			if !ok && missing == "" {
				missing = name
			}
			return v
		})
		if missing != "" {
			return fileError(path, n.Line, key, "environment variable %s is not set", missing)
		}
		expanded[n] = true
		if n.Style == 0 {
			// A plain scalar's type is resolved from its expanded value
			// (workers: ${N} is a number); quote "${VAR}" to keep a
			// string that looks like a number.
			n.Tag = ""
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := expandEnv(path, n.Content[i+1], join(key, n.Content[i].Value), expanded); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := expandEnv(path, c, fmt.Sprintf("%s[%d]", key, i), expanded); err != nil {
				return err
			}
		}
	case yaml.AliasNode, yaml.DocumentNode:
		return fileError(path, n.Line, key, "anchors and aliases are not supported")
	}
	return nil
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// namePattern is what an executor name may look like.
var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,47}$`)

// eachEntry calls fn for every entry of the mapping n, the section's
// value, whose values must be mappings too (want says what they hold).
func eachEntry(path, section, want string, n *yaml.Node, fn func(k, v *yaml.Node, key string) error) error {
	if n.Kind != yaml.MappingNode {
		return fileError(path, n.Line, section, "want a mapping of %s", want)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := section + "." + k.Value
		if v.Kind != yaml.MappingNode {
			return fileError(path, v.Line, key, "want a mapping: %s", want)
		}
		if err := fn(k, v, key); err != nil {
			return err
		}
	}
	return nil
}

// readExecutors reads `executors:`.
func readExecutors(path, dir string, n *yaml.Node) (map[string]ExecutorEntry, error) {
	out := map[string]ExecutorEntry{}
	err := eachEntry(path, "executors", "name to {type, settings}", n, func(k, v *yaml.Node, key string) error {
		if !namePattern.MatchString(k.Value) {
			return fileError(path, k.Line, key, "an executor name is lower-case letters, digits, - and _, starting with a letter")
		}
		var raw map[string]any
		if err := v.Decode(&raw); err != nil {
			return fileError(path, v.Line, key, "%v", err)
		}
		kind, _ := raw["type"].(string)
		if kind == "" {
			return fileError(path, v.Line, key+".type", "is required (comfyui, fal, replicate, cog, openai, gemini, command, local or mock)")
		}
		delete(raw, "type")
		settings, err := json.Marshal(raw)
		if err != nil {
			return fileError(path, v.Line, key, "settings cannot be read as JSON: %v", err)
		}
		out[k.Value] = ExecutorEntry{Type: kind, Settings: settings, Line: v.Line, Dir: dir}
		return nil
	})
	return out, err
}

// readTypes reads `types:`.
func readTypes(path string, n *yaml.Node) (map[string]TypeEntry, error) {
	out := map[string]TypeEntry{}
	err := eachEntry(path, "types", "task type to {executor, fallback}", n, func(k, v *yaml.Node, key string) error {
		e := TypeEntry{Line: v.Line}
		for j := 0; j+1 < len(v.Content); j += 2 {
			fk, fv := v.Content[j], v.Content[j+1]
			var err error
			switch fk.Value {
			case "executor":
				err = fv.Decode(&e.Executor)
			case "fallback":
				err = fv.Decode(&e.Fallback)
			default:
				err = errors.New("unknown key (known: executor, fallback)")
			}
			if err != nil {
				return fileError(path, fk.Line, key+"."+fk.Value, "%v", err)
			}
		}
		if e.Executor == "" {
			return fileError(path, v.Line, key+".executor", "is required")
		}
		out[k.Value] = e
		return nil
	})
	return out, err
}
