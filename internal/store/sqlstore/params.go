package sqlstore

import (
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// params collects a statement's parameters in order and writes their
// placeholders ($1, $2, …; rebound to ? on SQLite), so that a statement is
// built left to right and no placeholder number is counted by hand.
type params struct {
	vals []any
}

// add binds v and returns its placeholder.
func (p *params) add(v any) string {
	p.vals = append(p.vals, v)
	return "$" + strconv.Itoa(len(p.vals))
}

// list binds every value and returns their placeholders, comma-separated.
func (p *params) list(vs ...any) string {
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.add(v))
	}
	return b.String()
}

// inList is "column = $n" for one value and "column IN ($n, …)" for more,
// binding the values; "" for none.
func inList[T ~string](p *params, column string, values []T) string {
	switch len(values) {
	case 0:
		return ""
	case 1:
		return column + " = " + p.add(string(values[0]))
	}
	vs := make([]any, len(values))
	for i, v := range values {
		vs[i] = string(v)
	}
	return column + " IN (" + p.list(vs...) + ")"
}

// uuidList binds the ids as text and returns their placeholders.
func uuidList(p *params, ids []uuid.UUID) string {
	vs := make([]any, len(ids))
	for i, id := range ids {
		vs[i] = id.String()
	}
	return p.list(vs...)
}
