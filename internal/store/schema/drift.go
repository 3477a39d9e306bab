package schema

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store/sqlstore"
)

// DriftKind classifies one difference between a type's model and its
// migrated table.
type DriftKind string

// The kinds of drift.
const (
	// DriftMissingTable: no migration creates the type table.
	DriftMissingTable DriftKind = "missing table"
	// DriftMissingColumn: the model has a field the table lacks.
	DriftMissingColumn DriftKind = "missing column"
	// DriftExtraColumn: the table has a column no field maps to.
	DriftExtraColumn DriftKind = "extra column"
	// DriftColumnType: the column's type cannot hold the field's kind.
	DriftColumnType DriftKind = "column type"
	// DriftNullability: NULL is allowed where the field cannot be nil,
	// or refused where it can.
	DriftNullability DriftKind = "nullability"
)

// Difference is one way a type table differs from its model.
type Difference struct {
	// Kind classifies the difference.
	Kind DriftKind
	// Column is the column concerned ("" for the whole table).
	Column string
	// Want is what the model needs, as DDL ("BIGINT NOT NULL").
	Want string
	// Have is what the database has ("INTEGER NULL"; "" when absent).
	Have string
	// Detail says what goes wrong because of it.
	Detail string

	// harmless marks a column the model no longer has that allows NULL
	// or has a default: it breaks nothing and waits for a person to drop
	// it.
	harmless bool
}

// Blocking reports whether the difference needs a migration: everything
// but a leftover column that breaks nothing.
func (d Difference) Blocking() bool { return !d.harmless }

// String describes the difference in one line.
func (d Difference) String() string {
	what := string(d.Kind)
	if d.Column != "" {
		what += " " + d.Column
	}
	switch {
	case d.Want != "" && d.Have != "":
		what += fmt.Sprintf(": model wants %s, table has %s", d.Want, d.Have)
	case d.Want != "":
		what += ": model wants " + d.Want
	case d.Have != "":
		what += ": table has " + d.Have
	}
	if d.Detail != "" {
		what += " (" + d.Detail + ")"
	}
	return what
}

// TableDrift is the comparison of one type's table with its model on one
// database.
type TableDrift struct {
	// Dialect is the database ("sqlite" or "postgres").
	Dialect string
	// Type is the task type.
	Type string
	// Table is the type table.
	Table string
	// Differences is empty when the table matches the model.
	Differences []Difference

	def  *registry.Definition
	have []dbColumn
}

// Blocking reports whether any difference needs a migration. A table
// whose only differences are leftover columns (which the generated
// migration never drops) is not blocking.
func (d TableDrift) Blocking() bool {
	return slices.ContainsFunc(d.Differences, Difference.Blocking)
}

// String describes the drift, one difference per line.
func (d TableDrift) String() string {
	if len(d.Differences) == 0 {
		return fmt.Sprintf("%s: table %s of task type %q matches its model", d.Dialect, d.Table, d.Type)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: table %s of task type %q differs from its model:", d.Dialect, d.Table, d.Type)
	for _, diff := range d.Differences {
		b.WriteString("\n  - " + diff.String())
	}
	return b.String()
}

// dbColumn is one column as the database describes it.
type dbColumn struct {
	name, typ  string
	notNull    bool
	hasDefault bool
}

// Inspector reads a migrated database's catalog; *sqlstore.Store is one.
type Inspector interface {
	// Dialect names the database's SQL dialect.
	Dialect() string
	// TableColumns lists a table's columns in order (none: no table).
	TableColumns(ctx context.Context, table string) ([]sqlstore.Column, error)
}

var _ Inspector = (*sqlstore.Store)(nil)

// Drift compares the table of every type in reg with its model and returns
// the tables that differ. The database must be migrated.
func Drift(ctx context.Context, db Inspector, reg *registry.Registry) ([]TableDrift, error) {
	var out []TableDrift
	for _, def := range reg.All() {
		d, err := Compare(ctx, db, def)
		if err != nil {
			return nil, err
		}
		if len(d.Differences) > 0 {
			out = append(out, d)
		}
	}
	return out, nil
}

// Compare compares the table of one type with its model.
func Compare(ctx context.Context, db Inspector, def *registry.Definition) (TableDrift, error) {
	cols, err := db.TableColumns(ctx, def.Table)
	if err != nil {
		return TableDrift{}, fmt.Errorf("reading columns of %s: %w", def.Table, err)
	}
	have := make([]dbColumn, len(cols))
	for i, c := range cols {
		have[i] = dbColumn{name: c.Name, typ: c.Type, notNull: c.NotNull, hasDefault: c.HasDefault}
	}
	dialect := db.Dialect()
	d := TableDrift{Dialect: dialect, Type: def.Name, Table: def.Table, def: def, have: have}
	d.Differences = compare(dialect, def, have)
	return d, nil
}

// compare lists the differences between a model and the columns its table
// has (none at all: the table is missing).
func compare(dialect string, def *registry.Definition, have []dbColumn) []Difference {
	if len(have) == 0 {
		return []Difference{{Kind: DriftMissingTable, Want: "CREATE TABLE " + def.Table,
			Detail: "no migration of this dialect creates it"}}
	}
	byName := map[string]dbColumn{}
	for _, c := range have {
		byName[c.name] = c
	}
	var diffs []Difference
	if _, ok := byName["id"]; !ok {
		diffs = append(diffs, Difference{Kind: DriftMissingColumn, Column: "id",
			Want: "the primary key, referencing tasks (id)", Detail: "rows cannot be joined to their task"})
	}
	for _, c := range def.Columns {
		spec := specOf(def, c)
		want := SQLType(dialect, c.Kind) + nullText(!spec.Nullable)
		db, ok := byName[c.Name]
		if !ok {
			diffs = append(diffs, Difference{Kind: DriftMissingColumn, Column: c.Name, Want: want,
				Detail: "creating and loading tasks fails"})
			continue
		}
		have := strings.ToUpper(db.typ) + nullText(db.notNull)
		if !typeFits(dialect, c, db.typ) {
			diffs = append(diffs, Difference{Kind: DriftColumnType, Column: c.Name, Want: want, Have: have,
				Detail: fmt.Sprintf("cannot store a %s field of Go type %s", c.Kind, c.Type)})
		}
		switch {
		case db.notNull && spec.Nullable:
			diffs = append(diffs, Difference{Kind: DriftNullability, Column: c.Name, Want: want, Have: have,
				Detail: "storing a nil " + c.Type.String() + " fails"})
		case !db.notNull && !c.Nullable:
			diffs = append(diffs, Difference{Kind: DriftNullability, Column: c.Name, Want: want, Have: have,
				Detail: "a NULL would load as the zero value; make the field a pointer or the column NOT NULL"})
		}
	}
	for _, db := range have {
		if db.name == "id" || slices.ContainsFunc(def.Columns, func(c registry.Column) bool { return c.Name == db.name }) {
			continue
		}
		harmless := !db.notNull || db.hasDefault
		detail := "no field of the model maps to it; drop it once nothing reads it"
		if !harmless {
			detail = "NOT NULL without a default: creating tasks fails"
		}
		diffs = append(diffs, Difference{Kind: DriftExtraColumn, Column: db.name,
			Have: strings.ToUpper(db.typ) + nullText(db.notNull), Detail: detail, harmless: harmless})
	}
	return diffs
}

func nullText(notNull bool) string {
	if notNull {
		return " NOT NULL"
	}
	return " NULL"
}

// typeFits reports whether a column declared dbType holds the field's
// values without loss, as the store reads and writes them.
func typeFits(dialect string, c registry.Column, dbType string) bool {
	t := c.Type
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if dialect == DialectPostgres {
		switch dt := strings.ToLower(dbType); c.Kind {
		case registry.KindString:
			return dt == "text" || dt == "character varying" || dt == "character"
		case registry.KindInt:
			return dt == "bigint" || dt == "integer" && t.Bits() <= 32 || dt == "smallint" && t.Bits() <= 16
		case registry.KindFloat:
			return dt == "double precision" || dt == "real" && t.Bits() <= 32
		case registry.KindBool:
			return dt == "boolean"
		case registry.KindTime:
			return dt == "timestamp with time zone"
		case registry.KindJSON:
			return dt == "jsonb" || dt == "json"
		}
		return false
	}
	up := strings.ToUpper(strings.TrimSpace(dbType))
	switch aff := sqliteAffinity(up); c.Kind {
	case registry.KindString:
		return aff == "TEXT"
	case registry.KindJSON:
		return aff == "TEXT" || up == "JSON" || up == "JSONB"
	case registry.KindInt:
		return aff == "INTEGER"
	case registry.KindBool:
		return aff == "INTEGER" || up == "BOOLEAN" || up == "BOOL"
	case registry.KindFloat:
		return aff == "REAL"
	case registry.KindTime:
		// The driver parses stored text as a time only in these.
		return up == "TIMESTAMP" || up == "DATETIME" || up == "DATE"
	}
	return false
}

// sqliteAffinity applies SQLite's rules for the affinity of a declared
// type (https://sqlite.org/datatype3.html#determination_of_column_affinity).
func sqliteAffinity(decl string) string {
	switch {
	case strings.Contains(decl, "INT"):
		return "INTEGER"
	case strings.Contains(decl, "CHAR"), strings.Contains(decl, "CLOB"), strings.Contains(decl, "TEXT"):
		return "TEXT"
	case decl == "", strings.Contains(decl, "BLOB"):
		return "BLOB"
	case strings.Contains(decl, "REAL"), strings.Contains(decl, "FLOA"), strings.Contains(decl, "DOUB"):
		return "REAL"
	}
	return "NUMERIC"
}
