package schema

import (
	"fmt"
	"slices"
	"strings"
)

// Migration returns a goose migration that brings the table in line with
// its model, or "" when no difference is blocking: a CREATE TABLE for a missing
// table, ADD COLUMN for missing columns, type and NULL changes (on SQLite,
// which cannot alter a column, a rebuild of the table that keeps its rows).
//
// Columns the model no longer has are never dropped: the migration carries
// their DROP COLUMN as a comment, to uncomment once nothing reads them
// (their NOT NULL is dropped if they have no default, so creates work).
func (d TableDrift) Migration() (string, error) {
	if !d.Blocking() {
		return "", nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "-- Written by `compute migrate diff` for task type %q on %s:\n", d.Type, d.Dialect)
	for _, diff := range d.Differences {
		b.WriteString("--   " + diff.String() + "\n")
	}
	b.WriteString("-- Review it before you commit it.\n\n")
	specs := SpecsOf(d.def)
	if d.Differences[0].Kind == DriftMissingTable {
		m, err := CreateTableMigration(d.Dialect, d.Table, specs)
		if err != nil {
			return "", err
		}
		return b.String() + m, nil
	}
	var up, down []string
	var err error
	switch {
	case d.has(func(x Difference) bool { return x.Column == "id" }):
		up = []string{"-- The table has no id column: recreate it with CREATE TABLE (see the type's first migration)."}
	case d.Dialect == DialectSQLite && d.needsRebuild():
		up, down, err = d.rebuild(specs)
	default:
		up, down, err = d.alter(specs)
	}
	if err != nil {
		return "", err
	}
	b.WriteString("-- +goose Up\n" + strings.Join(up, "\n") + "\n\n-- +goose Down\n")
	slices.Reverse(down)
	if len(down) == 0 {
		down = []string{"-- Nothing to undo."}
	}
	b.WriteString(strings.Join(down, "\n") + "\n")
	return b.String(), nil
}

func (d TableDrift) has(f func(Difference) bool) bool { return slices.ContainsFunc(d.Differences, f) }

// needsRebuild reports whether SQLite needs the table rebuilt: it can add
// and drop columns, but not change a column's type or NOT NULL.
func (d TableDrift) needsRebuild() bool {
	return d.has(func(x Difference) bool {
		switch x.Kind {
		case DriftColumnType, DriftNullability:
			return true
		case DriftExtraColumn:
			return d.extraBlocksInserts(x.Column)
		}
		return false
	})
}

// extraBlocksInserts reports whether a column the model lacks is NOT NULL
// without a default, so that inserting a task fails.
func (d TableDrift) extraBlocksInserts(name string) bool {
	for _, c := range d.have {
		if c.name == name {
			return c.notNull && !c.hasDefault
		}
	}
	return false
}

func (d TableDrift) spec(specs []ColumnSpec, name string) ColumnSpec {
	for _, s := range specs {
		if s.Name == name {
			return s
		}
	}
	return ColumnSpec{Name: name}
}

// fill is the value a NOT NULL column takes where a row has NULL: its
// default, or its kind's zero value.
func fill(dialect string, s ColumnSpec) string {
	if s.Default != "" {
		if lit, err := DefaultLiteral(dialect, s.Kind, s.Default); err == nil {
			return lit
		}
	}
	return zeroLiteral(dialect, s.Kind)
}

// alter writes ALTER TABLE statements (PostgreSQL; SQLite when only
// columns are added or dropped).
func (d TableDrift) alter(specs []ColumnSpec) (up, down []string, err error) {
	t := Ident(d.Table)
	pg := d.Dialect == DialectPostgres
	for _, x := range d.Differences {
		col := Ident(x.Column)
		s := d.spec(specs, x.Column)
		switch x.Kind {
		case DriftMissingColumn:
			ddl, err := columnDDL(d.Dialect, s, 0, true)
			if err != nil {
				return nil, nil, err
			}
			up = append(up, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s;", t, ddl))
			down = append(down, fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s;", t, col))
		case DriftExtraColumn:
			if pg && d.extraBlocksInserts(x.Column) {
				up = append(up, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL;", t, col))
				down = append(down, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL;", t, col))
			}
			up = append(up, fmt.Sprintf("-- %s is no longer in the model; drop it once nothing reads it:\n-- ALTER TABLE %s DROP COLUMN %s;", col, t, col))
		case DriftColumnType:
			typ, old := SQLType(d.Dialect, s.Kind), strings.ToUpper(d.oldType(x.Column))
			up = append(up, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s::%s;", t, col, typ, col, typ))
			down = append(down, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s::%s;", t, col, old, col, old))
		case DriftNullability:
			if s.Nullable {
				up = append(up, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL;", t, col))
				down = append(down, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL;", t, col))
				continue
			}
			up = append(up, fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s IS NULL;", t, col, fill(d.Dialect, s), col),
				fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL;", t, col))
			down = append(down, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL;", t, col))
		}
	}
	return up, down, nil
}

func (d TableDrift) oldType(name string) string {
	for _, c := range d.have {
		if c.name == name {
			return c.typ
		}
	}
	return ""
}

// rebuild writes SQLite's table rebuild: create the table as the model
// wants it (keeping columns the model lacks, nullable), copy the rows,
// drop the old table, rename the new one.
func (d TableDrift) rebuild(specs []ColumnSpec) (up, down []string, err error) {
	var extra []dbColumn
	old := map[string]dbColumn{}
	for _, c := range d.have {
		old[c.name] = c
		if c.name != "id" && !slices.ContainsFunc(specs, func(s ColumnSpec) bool { return s.Name == c.name }) {
			extra = append(extra, c)
		}
	}
	tmp := d.Table + "__new"
	create, err := createTable(d.Dialect, tmp, specs, extra, true)
	if err != nil {
		return nil, nil, err
	}
	cols, exprs := []string{"id"}, []string{"id"}
	for _, s := range specs {
		c, ok := old[s.Name]
		if !ok {
			continue // the new column's default fills it
		}
		expr := Ident(s.Name)
		if !s.Nullable && !c.notNull {
			expr = fmt.Sprintf("COALESCE(%s, %s)", expr, fill(d.Dialect, s))
		}
		cols, exprs = append(cols, Ident(s.Name)), append(exprs, expr)
	}
	for _, c := range extra {
		cols, exprs = append(cols, Ident(c.name)), append(exprs, Ident(c.name))
	}
	up = []string{
		"-- SQLite cannot change a column's type or NOT NULL: rebuild the table, keeping its rows.",
		create + ";",
		fmt.Sprintf("INSERT INTO %s (%s)\nSELECT %s FROM %s;", Ident(tmp), strings.Join(cols, ", "), strings.Join(exprs, ", "), Ident(d.Table)),
		fmt.Sprintf("DROP TABLE %s;", Ident(d.Table)),
		fmt.Sprintf("ALTER TABLE %s RENAME TO %s;", Ident(tmp), Ident(d.Table)),
	}
	for _, c := range extra {
		up = append(up, fmt.Sprintf("-- %s is no longer in the model; drop it once nothing reads it:\n-- ALTER TABLE %s DROP COLUMN %s;",
			Ident(c.name), Ident(d.Table), Ident(c.name)))
	}
	down = []string{"-- A table rebuild is not undone; restore the table from a backup if needed."}
	return up, down, nil
}
