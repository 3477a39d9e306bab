package sqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"sync"
)

// The store's SQL is written once with PostgreSQL's $N placeholders.
// SQLite accepts them, but as named parameters whose lookup makes preparing
// and binding a statement quadratic in its parameter count (a 250-row
// multi-row INSERT took 70× longer than with plain ?). On SQLite every
// statement is therefore rewritten to anonymous ? placeholders, with the
// arguments reordered (and repeated) to match.

// rebound is a rewritten statement: its text and, for each ?, the index of
// the original argument.
type rebound struct {
	query string
	order []int
}

var reboundCache sync.Map // query string → rebound

// rebind rewrites $N placeholders outside string literals to ? and returns
// the arguments in the new order.
func rebind(query string, args []any) (string, []any) {
	var rb rebound
	if v, ok := reboundCache.Load(query); ok {
		rb = v.(rebound)
	} else {
		rb = parsePlaceholders(query)
		reboundCache.Store(query, rb)
	}
	if rb.order == nil {
		return query, args
	}
	out := make([]any, len(rb.order))
	for i, n := range rb.order {
		if n < len(args) {
			out[i] = args[n]
		}
	}
	return rb.query, out
}

func parsePlaceholders(q string) rebound {
	buf := make([]byte, 0, len(q))
	var order []int
	inString := false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'':
			inString = !inString
		case c == '$' && !inString && i+1 < len(q) && q[i+1] >= '1' && q[i+1] <= '9':
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			n, _ := strconv.Atoi(q[i+1 : j])
			order = append(order, n-1)
			buf = append(buf, '?')
			i = j - 1
			continue
		}
		buf = append(buf, c)
	}
	if order == nil {
		return rebound{query: q}
	}
	return rebound{query: string(buf), order: order}
}

// dbx is a connection pool whose statements are rebound on SQLite and
// whose errors are classified (errkind.go).
type dbx struct {
	*sql.DB
	rebind bool
	// wrote, when set (SQLite's writer), is told of every statement run
	// outside a transaction (inTx reports its commits itself).
	wrote func()
}

// ExecContext runs a statement.
func (d *dbx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if d.rebind {
		query, args = rebind(query, args)
	}
	if d.wrote != nil {
		defer d.wrote()
	}
	res, err := d.DB.ExecContext(ctx, query, args...)
	return res, classify(err)
}

// QueryContext runs a query.
func (d *dbx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if d.rebind {
		query, args = rebind(query, args)
	}
	if d.wrote != nil {
		defer d.wrote()
	}
	rows, err := d.DB.QueryContext(ctx, query, args...)
	return rows, classify(err)
}

// QueryRowContext runs a query returning at most one row.
func (d *dbx) QueryRowContext(ctx context.Context, query string, args ...any) row {
	if d.rebind {
		query, args = rebind(query, args)
	}
	if d.wrote != nil {
		defer d.wrote()
	}
	return row{d.DB.QueryRowContext(ctx, query, args...)}
}

// ExecContext runs a statement in the transaction.
func (tx *txn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if tx.rebind {
		query, args = rebind(query, args)
	}
	res, err := tx.Tx.ExecContext(ctx, query, args...)
	return res, classify(err)
}

// QueryContext runs a query in the transaction.
func (tx *txn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if tx.rebind {
		query, args = rebind(query, args)
	}
	rows, err := tx.Tx.QueryContext(ctx, query, args...)
	return rows, classify(err)
}

// QueryRowContext runs a query returning at most one row in the transaction.
func (tx *txn) QueryRowContext(ctx context.Context, query string, args ...any) row {
	if tx.rebind {
		query, args = rebind(query, args)
	}
	return row{tx.Tx.QueryRowContext(ctx, query, args...)}
}

// row is a single-row result whose Scan classifies the error (errkind.go).
type row struct{ r *sql.Row }

// Scan copies the row's columns into dest.
func (r row) Scan(dest ...any) error { return classify(r.r.Scan(dest...)) }
