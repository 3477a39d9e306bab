package sqlstore

import (
	"strings"
	"time"
)

// On PostgreSQL, the batched writes of transitions and events pass their
// rows as one JSON array parameter that the statement turns back into rows (json_to_recordset).
// The statement's text is then the same for every batch size, so pgx
// prepares it once per connection, instead of a VALUES list with thousands
// of placeholders planned afresh for every batch. (SQLite, in process, runs
// a statement per row prepared once per batch instead: see changeSQL.)

// batchCol is a column of a JSON batch, with its PostgreSQL type.
type batchCol struct{ name, pgType string }

// jsonRows returns the FROM item, aliased v, that reads the JSON array in
// parameter param as rows of cols (PostgreSQL). Every value in the array
// is a JSON string, number, boolean or null; JSON documents travel as
// strings, so the database stores the exact text that was written.
func (d dialect) jsonRows(param string, cols []batchCol) string {
	var b strings.Builder
	b.WriteString("json_to_recordset(" + param + "::json) AS v (")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.name + " " + batchType(c.pgType))
	}
	b.WriteString(")")
	return b.String()
}

// batchType is the type a column is read as from the JSON batch: JSON
// documents arrive as strings and are cast where they are used (batchValue).
func batchType(pgType string) string {
	if pgType == "jsonb" || pgType == "json" {
		return "text"
	}
	return pgType
}

// batchValue returns how a statement refers to column c of the batch v:
// with the cast back to a JSON type where the column is one.
func (d dialect) batchValue(c batchCol) string {
	if d.castParams && (c.pgType == "jsonb" || c.pgType == "json") {
		return "v." + c.name + "::" + c.pgType
	}
	return "v." + c.name
}

// sqliteTimeFormat is how modernc.org/sqlite writes a time.Time with
// _time_format=sqlite; PostgreSQL reads it as a timestamptz.
const sqliteTimeFormat = "2006-01-02 15:04:05.999999999-07:00"

// batchTime is t as a JSON batch carries it: dbTime(t) as text, in the
// one format both databases read.
func batchTime(t time.Time) string { return dbTime(t).Format(sqliteTimeFormat) }

// batchTimePtr is batchTime for an optional time (nil stays null).
func batchTimePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := batchTime(*t)
	return &s
}
