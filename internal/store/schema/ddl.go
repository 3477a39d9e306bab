// Package schema is the tooling around the SQL store's tables: the DDL a
// new type's first migration needs (the scaffold), the drift between a
// type's model and its migrated table with the migration that mends it
// (`compute migrate diff`, the conformance suite), and scratch databases
// for such checks. The store itself never uses it.
package schema

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store/sqlstore"
)

// The dialect names the DDL functions take are sqlstore's (what
// Store.Dialect returns).
const (
	DialectSQLite   = sqlstore.DialectSQLite
	DialectPostgres = sqlstore.DialectPostgres
)

// ColumnSpec describes one column of a type table for generated DDL: the
// scaffold writes a new type's first migration from specs, and the drift
// check writes the migration that brings a table back in line with its
// model.
type ColumnSpec struct {
	// Name is the column name.
	Name string
	// Kind is the storage class.
	Kind registry.Kind
	// Nullable allows NULL: pointer, slice and map fields.
	Nullable bool
	// Default is the field's `default` tag ("" for none), in its JSON
	// form (5, 0.5, true, png, 2026-01-02T15:04:05Z).
	Default string
}

// SpecsOf returns the column specs of a type's model, with the defaults
// of its `default` tags.
func SpecsOf(def *registry.Definition) []ColumnSpec {
	specs := make([]ColumnSpec, len(def.Columns))
	for i, c := range def.Columns {
		specs[i] = specOf(def, c)
	}
	return specs
}

func specOf(def *registry.Definition, c registry.Column) ColumnSpec {
	return ColumnSpec{
		Name:     c.Name,
		Kind:     c.Kind,
		Nullable: canBeNil(c.Type),
		Default:  def.Model.FieldByIndex(c.Index).Tag.Get("default"),
	}
}

// canBeNil reports whether a field of type t can hold no value, which the
// store writes as NULL. A struct stored as JSON cannot, although the
// registry calls its column nullable.
func canBeNil(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map:
		return true
	}
	return false
}

// SQLType returns the column type the generated DDL uses for a kind.
func SQLType(dialect string, k registry.Kind) string {
	pg := dialect == DialectPostgres
	switch k {
	case registry.KindString:
		return "TEXT"
	case registry.KindInt:
		if pg {
			return "BIGINT"
		}
		return "INTEGER"
	case registry.KindFloat:
		if pg {
			return "DOUBLE PRECISION"
		}
		return "REAL"
	case registry.KindBool:
		if pg {
			return "BOOLEAN"
		}
		return "INTEGER"
	case registry.KindTime:
		if pg {
			return "TIMESTAMPTZ"
		}
		// The SQLite driver parses times only in columns declared DATE,
		// DATETIME or TIMESTAMP.
		return "TIMESTAMP"
	case registry.KindJSON:
		if pg {
			return "JSONB"
		}
		return "TEXT"
	}
	return "TEXT"
}

func checkDialect(dialect string) error {
	if dialect != DialectSQLite && dialect != DialectPostgres {
		return fmt.Errorf("unknown dialect %q (want %s or %s)", dialect, DialectSQLite, DialectPostgres)
	}
	return nil
}

// columnDDL renders a column definition. With forceDefault, a NOT NULL
// column without a default tag gets its kind's zero value as default, as
// ALTER TABLE … ADD COLUMN needs on a table with rows.
func columnDDL(dialect string, c ColumnSpec, width int, forceDefault bool) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s %s", width, Ident(c.Name), SQLType(dialect, c.Kind))
	if c.Nullable {
		return b.String(), nil
	}
	b.WriteString(" NOT NULL")
	switch {
	case c.Default != "":
		lit, err := DefaultLiteral(dialect, c.Kind, c.Default)
		if err != nil {
			return "", fmt.Errorf("column %s: %w", c.Name, err)
		}
		b.WriteString(" DEFAULT " + lit)
	case forceDefault:
		b.WriteString(" DEFAULT " + zeroLiteral(dialect, c.Kind))
	}
	return b.String(), nil
}

// CreateTableSQL returns the CREATE TABLE statement of a type table: an id
// that references tasks(id) with ON DELETE CASCADE, then the columns.
func CreateTableSQL(dialect, table string, cols []ColumnSpec) (string, error) {
	return createTable(dialect, table, cols, nil, false)
}

// createTable renders CREATE TABLE; extra columns (name → declared type)
// are kept as nullable columns after the model's, and forceDefault gives
// NOT NULL columns a default.
func createTable(dialect, table string, cols []ColumnSpec, extra []dbColumn, forceDefault bool) (string, error) {
	if err := checkDialect(dialect); err != nil {
		return "", err
	}
	width := len("id")
	for _, c := range cols {
		width = max(width, len(Ident(c.Name)))
	}
	for _, c := range extra {
		width = max(width, len(Ident(c.name)))
	}
	idType := "TEXT"
	if dialect == DialectPostgres {
		idType = "UUID"
	}
	lines := []string{fmt.Sprintf("%-*s %s PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE", width, "id", idType)}
	for _, c := range cols {
		l, err := columnDDL(dialect, c, width, forceDefault)
		if err != nil {
			return "", err
		}
		lines = append(lines, l)
	}
	for _, c := range extra {
		lines = append(lines, fmt.Sprintf("%-*s %s", width, Ident(c.name), strings.ToUpper(c.typ)))
	}
	return "CREATE TABLE " + Ident(table) + " (\n    " + strings.Join(lines, ",\n    ") + "\n)", nil
}

// CreateTableMigration returns a goose migration file that creates a type
// table (Up) and drops it (Down).
func CreateTableMigration(dialect, table string, cols []ColumnSpec) (string, error) {
	create, err := CreateTableSQL(dialect, table, cols)
	if err != nil {
		return "", err
	}
	return "-- +goose Up\n" + create + ";\n\n-- +goose Down\nDROP TABLE " + Ident(table) + ";\n", nil
}

// DefaultLiteral renders a `default` tag value as an SQL literal of the
// kind, or fails when the value is not one of the kind.
func DefaultLiteral(dialect string, k registry.Kind, raw string) (string, error) {
	switch k {
	case registry.KindString:
		return "'" + strings.ReplaceAll(raw, "'", "''") + "'", nil
	case registry.KindInt:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return "", fmt.Errorf("default %q is not an integer", raw)
		}
		return strconv.FormatInt(n, 10), nil
	case registry.KindFloat:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return "", fmt.Errorf("default %q is not a number", raw)
		}
		return strconv.FormatFloat(f, 'g', -1, 64), nil
	case registry.KindBool:
		v, err := strconv.ParseBool(raw)
		if err != nil {
			return "", fmt.Errorf("default %q is not true or false", raw)
		}
		return boolLiteral(dialect, v), nil
	case registry.KindTime:
		t, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			return "", fmt.Errorf("default %q is not an RFC 3339 time", raw)
		}
		return timeLiteral(dialect, t), nil
	}
	return "", fmt.Errorf("a %s column cannot have a default", k)
}

func boolLiteral(dialect string, v bool) string {
	switch {
	case dialect == DialectPostgres && v:
		return "TRUE"
	case dialect == DialectPostgres:
		return "FALSE"
	case v:
		return "1"
	}
	return "0"
}

// timeLiteral writes t as the store does (dbTime, in the driver's text
// format, which PostgreSQL reads too), so that stored times compare
// correctly on SQLite.
func timeLiteral(dialect string, t time.Time) string {
	return "'" + sqlstore.TimeText(t) + "'"
}

// zeroLiteral is the literal of the Go zero value of a kind.
func zeroLiteral(dialect string, k registry.Kind) string {
	switch k {
	case registry.KindString:
		return "''"
	case registry.KindInt, registry.KindFloat:
		return "0"
	case registry.KindBool:
		return boolLiteral(dialect, false)
	case registry.KindTime:
		return timeLiteral(dialect, time.Time{})
	case registry.KindJSON:
		return "'null'"
	}
	return "NULL"
}

// Ident returns name as an SQL identifier, quoted when it is a keyword of
// either database (a column named "order" must be written "order").
func Ident(name string) string {
	if sqlKeywords[strings.ToLower(name)] {
		return `"` + name + `"`
	}
	return name
}

// sqlKeywords are the words SQLite or PostgreSQL reserve, or that are
// risky as bare identifiers in either.
var sqlKeywords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`abort action add after all alter always analyse analyze and array as
	asc asymmetric attach authorization autoincrement before begin between binary both by cascade case
	cast check collate collation column commit concurrently conflict constraint create cross current
	current_catalog current_date current_role current_schema current_time current_timestamp current_user
	database default deferrable deferred delete desc detach distinct do drop each else end escape except
	exclude exclusive exists explain fail false fetch filter first following for foreign freeze from full
	generated glob grant group groups having if ignore ilike immediate in index indexed initially inner
	insert instead intersect into is isnull join key last lateral leading left like limit localtime
	localtimestamp match materialized natural no not nothing notnull null nulls of offset on only or
	order others outer over overlaps partition placing plan pragma preceding primary query raise range
	recursive references regexp reindex release rename replace restrict returning right rollback row
	rows savepoint select session_user set similar some symmetric table tablesample temp temporary then
	ties to trailing transaction trigger true unbounded union unique update user using vacuum values
	variadic verbose view virtual when where window with without`) {
		m[w] = true
	}
	return m
}()
