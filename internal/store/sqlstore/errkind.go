package sqlstore

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/computeserver/compute/internal/store"
)

// classify is the one place where driver errors get a store error kind
// (store.ErrUnavailable, store.ErrFull, store.ErrInvalidText): it returns
// err wrapped with its kind, so errors.Is finds the kind and the driver's
// error, or err itself when it has none (or already has one). Every
// statement the store runs passes its error through it (rebind.go, inTx).
func classify(err error) error {
	if err == nil {
		return nil
	}
	kind := kindOf(err)
	if kind == nil || errors.Is(err, kind) {
		return err
	}
	return fmt.Errorf("%w: %w", kind, err)
}

func kindOf(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pgKind(pe.Code)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return sqliteKind(se.Code())
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone), errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return store.ErrUnavailable
	}
	return nil
}

// pgKind maps a PostgreSQL SQLSTATE to a kind.
func pgKind(code string) error {
	switch {
	case code == "53100": // disk_full
		return store.ErrFull
	case strings.HasPrefix(code, "08"), // connection exception
		code == "53000", code == "53200", code == "53300", // insufficient resources, out of memory, too many connections
		code == "57P01", code == "57P02", code == "57P03", // admin or crash shutdown, cannot connect now
		code == "25006": // read-only transaction (a standby)
		return store.ErrUnavailable
	case code == "22021", code == "22P05": // bad byte sequence; \u0000 in jsonb
		return store.ErrInvalidText
	}
	return nil
}

// sqliteKind maps a SQLite result code (extended codes carry the primary
// one in their low byte) to a kind.
func sqliteKind(code int) error {
	switch code & 0xff {
	case sqlite3.SQLITE_FULL:
		return store.ErrFull
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN,
		sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY:
		return store.ErrUnavailable
	}
	return nil
}
