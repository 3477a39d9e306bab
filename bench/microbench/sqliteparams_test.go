package microbench

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// BenchmarkSQLitePlaceholders inserts rows rows of cols columns in one
// multi-row INSERT, the shape sqlstore uses for CreateTasks, FinishRuns and
// events, with three placeholder styles. SQLite treats $N as a named
// parameter: preparing looks each name up in a list (quadratic in the
// parameter count) and modernc asks for every parameter's name when binding
// (quadratic again). Anonymous ? placeholders have no names to look up.
func BenchmarkSQLitePlaceholders(b *testing.B) {
	const cols = 36
	for _, rows := range []int{10, 100, 250} {
		for _, style := range []string{"dollar", "qnum", "anon"} {
			b.Run(fmt.Sprintf("rows=%d/%s", rows, style), func(b *testing.B) {
				db := openBench(b, cols)
				q, args := insertStatement(rows, cols, style)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := db.Exec(`DELETE FROM t`); err != nil {
						b.Fatal(err)
					}
					if _, err := db.Exec(q, args...); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
			})
		}
	}
}

func openBench(b *testing.B, cols int) *sql.DB {
	b.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(b.TempDir(), "p.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	defs := make([]string, cols)
	for i := range defs {
		defs[i] = fmt.Sprintf("c%d TEXT", i)
	}
	if _, err := db.Exec(`CREATE TABLE t (` + strings.Join(defs, ", ") + `)`); err != nil {
		b.Fatal(err)
	}
	return db
}

// insertStatement returns a rows-row INSERT with placeholders in style
// "dollar" ($1, $2, … as sqlstore writes them), "qnum" (?1, ?2, …) or
// "anon" (?), and its arguments.
func insertStatement(rows, cols int, style string) (string, []any) {
	var b strings.Builder
	b.WriteString("INSERT INTO t VALUES ")
	args := make([]any, 0, rows*cols)
	for r := range rows {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteString(", ")
			}
			n := len(args) + 1
			switch style {
			case "dollar":
				fmt.Fprintf(&b, "$%d", n)
			case "qnum":
				fmt.Fprintf(&b, "?%d", n)
			default:
				b.WriteByte('?')
			}
			args = append(args, fmt.Sprintf("value %d", n))
		}
		b.WriteByte(')')
	}
	return b.String(), args
}
