package registry

import (
	"fmt"
	"regexp"
	"sort"
)

// Declaration is anything that can describe a task type; Type[M, U] is the
// one task authors use.
type Declaration interface {
	// Declare validates the declaration and returns its erased definition.
	Declare() (*Definition, error)
}

// Registry holds the registered task types. It is a plain value: build one at
// start-up, register every type explicitly, then share it read-only.
type Registry struct {
	defs  map[string]*Definition
	names []string
}

// New returns an empty registry.
func New() *Registry { return &Registry{defs: map[string]*Definition{}} }

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

// reserved names would collide with routes, tables or words of the API.
var reserved = map[string]bool{
	"task": true, "tasks": true, "all": true, "base": true, "events": true,
	"webhooks": true, "types": true, "task_types": true, "api_keys": true,
}

// ValidateName reports whether name can be a task type name: lower-case
// snake_case, starting with a letter, at most 48 characters, not reserved.
func ValidateName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("task type name %q must be lower-case snake_case: a letter, then letters, digits or underscores, at most 48 characters", name)
	}
	if reserved[name] {
		return fmt.Errorf("task type name %q is reserved", name)
	}
	return nil
}

// reservedAliases are path segments under /api/v1 that the API serves
// itself; a route alias may not take them.
var reservedAliases = map[string]bool{
	"artifacts": true, "monitoring": true, "workflows": true, "executors": true, "openapi": true,
	"docs": true, "schemas": true, "healthz": true, "readyz": true, "metrics": true,
}

// validateAlias reports whether alias can be a route alias: a valid type
// name that names none of the API's own routes.
func validateAlias(alias string) error {
	if !namePattern.MatchString(alias) || reserved[alias] || reservedAliases[alias] {
		return fmt.Errorf("route alias %q must be lower-case snake_case and not one of the API's own path segments", alias)
	}
	return nil
}

// Register validates d and adds its type. A duplicate name or route
// alias, or an invalid declaration, is an error naming the type and the
// problem.
func (r *Registry) Register(d Declaration) error {
	def, err := d.Declare()
	if err != nil {
		return fmt.Errorf("registering task type: %w", err)
	}
	if _, dup := r.defs[def.Name]; dup {
		return fmt.Errorf("registering task type %q: already registered", def.Name)
	}
	if def.RouteAlias != "" {
		for _, other := range r.defs {
			if other.RouteAlias == def.RouteAlias {
				return fmt.Errorf("registering task type %q: route alias %q is already task type %q's", def.Name, def.RouteAlias, other.Name)
			}
		}
	}
	r.defs[def.Name] = def
	r.names = append(r.names, def.Name)
	sort.Strings(r.names)
	return nil
}

// MustRegister is Register that panics; for tests and examples.
func (r *Registry) MustRegister(d Declaration) {
	if err := r.Register(d); err != nil {
		panic(err)
	}
}

// Lookup returns the definition of the named type.
func (r *Registry) Lookup(name string) (*Definition, bool) {
	d, ok := r.defs[name]
	return d, ok
}

// Names returns the registered type names in sorted order.
func (r *Registry) Names() []string { return append([]string(nil), r.names...) }

// All returns the definitions sorted by name.
func (r *Registry) All() []*Definition {
	out := make([]*Definition, 0, len(r.names))
	for _, n := range r.names {
		out = append(out, r.defs[n])
	}
	return out
}

// Len returns the number of registered types.
func (r *Registry) Len() int { return len(r.names) }
