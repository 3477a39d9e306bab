// Package sqlstore implements store.Store over database/sql for SQLite
// (modernc.org/sqlite, no cgo) and PostgreSQL (pgx). The SQL is shared; the
// few places where the dialects differ are fields of dialect.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
)

// The dialect names Dialect returns.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// dialect holds what differs between the two databases.
type dialect struct {
	name string
	// skipLocked is appended to the claim's inner SELECT.
	skipLocked string
	// forUpdate locks a row read inside a transaction.
	forUpdate string
	caps      store.Capabilities
	// castParams: parameters in VALUES lists and JSON batches need
	// explicit casts (PostgreSQL plans types before it sees values).
	castParams bool
	// jsonBatches: a batched write (transitions, events) is one statement
	// over one JSON parameter, planned once, since every statement is a
	// round trip (PostgreSQL, jsonbatch.go). Otherwise a statement
	// prepared once per batch runs per row, which in process costs less
	// than parsing JSON or a long VALUES list (SQLite).
	jsonBatches bool
	// jsonAppend appends a JSON value (the second %s) to a JSON array
	// column (the first).
	jsonAppend string
	// namesIndexes: the engine's queries name their index (indexedBy).
	namesIndexes bool
	// localFile: the database is a file this process can see, so it can
	// check the disk's free space (SQLite).
	localFile bool
	// goose is the migration tool's dialect; migrationLock: migrations
	// take a session lock, since several processes may migrate at once
	// (SQLite's single writer serialises them by itself).
	goose         goose.Dialect
	migrationLock bool
	// columnsQuery lists a table's columns from the catalog: name, type,
	// NOT NULL, has a default; $1 is the table.
	columnsQuery string
	// seconds is the number of seconds from the first time column (%s)
	// to the second.
	seconds string
}

// lockOf returns the clause that row-locks the rows of a table alias in a
// SELECT (PostgreSQL); SQLite's single writer needs none.
func (d dialect) lockOf(alias string) string {
	if d.forUpdate == "" {
		return ""
	}
	return " FOR UPDATE OF " + alias
}

// indexedBy names the index a query of the engine must use, where the
// dialect's planner needs to be told (SQLite): without statistics it
// prefers an index with an equality on status, such as the task list's
// (status, created_at), to the engine's partial indexes, and sorts every
// pending or executing task for each claim and sweep. PostgreSQL plans
// from statistics and gets nothing.
func (d dialect) indexedBy(index string) string {
	if !d.namesIndexes {
		return ""
	}
	return " INDEXED BY " + index
}

// cast returns the placeholder ph, cast to the PostgreSQL type pgType where
// the dialect needs it.
func (d dialect) cast(ph, pgType string) string {
	if d.castParams {
		return ph + "::" + pgType
	}
	return ph
}

var (
	sqliteDialect = dialect{
		name:         DialectSQLite,
		namesIndexes: true,
		localFile:    true,
		jsonAppend:   `json_insert(%s, '$[#]', json(%s))`,
		goose:        goose.DialectSQLite3,
		columnsQuery: `SELECT name, type, "notnull" <> 0, dflt_value IS NOT NULL FROM pragma_table_info($1) ORDER BY cid`,
		seconds:      `((julianday(%[2]s) - julianday(%[1]s)) * 86400.0)`,
	}
	pgDialect = dialect{
		name:          DialectPostgres,
		skipLocked:    " FOR UPDATE SKIP LOCKED",
		forUpdate:     " FOR UPDATE",
		caps:          store.Capabilities{SkipLocked: true, ListenNotify: true},
		castParams:    true,
		jsonBatches:   true,
		jsonAppend:    `%s || jsonb_build_array(%s)`,
		goose:         goose.DialectPostgres,
		migrationLock: true,
		columnsQuery: `SELECT column_name, data_type, is_nullable = 'NO', column_default IS NOT NULL
FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
		seconds: `EXTRACT(EPOCH FROM (%[2]s - %[1]s))::DOUBLE PRECISION`,
	}
)

// Store is the SQL implementation of store.Store.
type Store struct {
	d dialect
	w *dbx // writes (one connection on SQLite)
	r *dbx // reads (a pool; the same as w on PostgreSQL)
	// lists serves event replays and task lists: on PostgreSQL a small
	// pool of its own, so that many long replays queue for its
	// connections instead of the writers'; on SQLite the read pool.
	lists     *dbx
	listConns int
	reg       *registry.Registry
	log       *slog.Logger

	// fullAt is when a write transaction last failed for lack of space
	// (unix nanoseconds; 0: never), for CheckWritable (health.go).
	fullAt atomic.Int64

	// dsn and channel are PostgreSQL's connection string and the NOTIFY
	// channel of this schema.
	dsn, channel string
	hub          hub
	listenOnce   sync.Once
	readyOnce    sync.Once
	listenReady  chan struct{} // closed once the first LISTEN is in place

	// done is closed by Close; bg counts the background goroutines
	// (goBackground), which Close waits for.
	done   chan struct{}
	bgMu   sync.Mutex
	closed bool
	bg     sync.WaitGroup

	limitsMu sync.Mutex
	limits   map[string]int
	limitsAt time.Time
	// tenantLimits is the cached copy of tenant_limits, as of
	// tenantLimitsAt (under limitsMu).
	tenantLimits   map[string]int
	tenantLimitsAt time.Time
	// holdsMu guards the cached scheduling holds of drained servers.
	holdsMu   sync.Mutex
	servers   map[string]bool
	serversAt time.Time

	// fifo claims in first-come order (priority, run_at, created_at)
	// instead of the fair share between tenants (WithFIFOClaim).
	fifo bool

	// creates feeds the group-commit writer of CreateTask.
	creates chan createReq

	// sql holds the batch statements built for the dialect at Open.
	sql statements

	// ckpt checkpoints SQLite's WAL beside the writer; ckptWake tells it
	// that a transaction committed.
	ckpt     *sql.DB
	ckptWake chan struct{}

	// sink receives the events of every committed transaction.
	sink func([]event.Event)
	// targets says which webhook deliveries an event gets (nil: none).
	targets func(event.Event) []store.DeliveryTarget
	// workflowHook is the workflow policy (nil: workflows never advance).
	workflowHook store.WorkflowHook
}

// statements are the batch statements whose text depends only on the
// dialect, built once (or once per shape).
type statements struct {
	insertEvents string
	// changes holds the status-change statements, built per shape as
	// they are first needed (changeSQL).
	changes *changeStatements
}

func newStatements(d dialect) statements {
	return statements{insertEvents: insertEventsSQL(d), changes: &changeStatements{}}
}

// Option configures a Store.
type Option func(*Store)

// WithEventSink calls sink with the events of every committed write
// transaction, in id order, after the commit (for publishing on a bus). It
// must not block for long.
func WithEventSink(sink func([]event.Event)) Option {
	return func(s *Store) { s.sink = sink }
}

// WithListConns sets the size of PostgreSQL's pool for event replays and
// task lists (default 4). SQLite serves them from its read pool.
func WithListConns(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.listConns = n
		}
	}
}

// WithWebhookTargets makes the store write, beside every event and in its
// transaction, one webhook delivery per target that targets returns for
// it (package webhook decides them). Without it the store writes no
// deliveries to tasks' own URLs; webhook endpoints' deliveries are written
// either way (insertDeliveries). targets runs inside write transactions: it must be quick
// and must not touch the store.
func WithWebhookTargets(targets func(event.Event) []store.DeliveryTarget) Option {
	return func(s *Store) { s.targets = targets }
}

// WithFIFOClaim makes claims take due tasks in first-come order
// (priority, then run_at, then created_at) instead of the fair share
// between tenants (priority, then each tenant's turn: see claimOrder). It
// is the order before fair scheduling, kept for comparisons.
func WithFIFOClaim() Option {
	return func(s *Store) { s.fifo = true }
}

var _ store.Store = (*Store)(nil)

// IsPostgresURL reports whether dsn selects PostgreSQL.
func IsPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open connects to the database named by dsn: a postgres:// URL, or else a
// SQLite file path (created with its directory if missing). It does not
// migrate; call Migrate.
func Open(ctx context.Context, dsn string, reg *registry.Registry, log *slog.Logger, opts ...Option) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{reg: reg, log: log, dsn: dsn, listConns: 4}
	for _, o := range opts {
		o(s)
	}
	s.done, s.creates = make(chan struct{}), make(chan createReq)
	if IsPostgresURL(dsn) {
		cc, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("parsing DATABASE_URL: %w", err)
		}
		// A client that stops inside a transaction (a paused process, a
		// network split) holds its locks, the event-order lock among them,
		// until the server ends its session: bound that to well under a
		// lease, so other workers stall at most that long.
		if _, set := cc.RuntimeParams["idle_in_transaction_session_timeout"]; !set {
			cc.RuntimeParams["idle_in_transaction_session_timeout"] = "5s"
		}
		db := stdlib.OpenDB(*cc)
		db.SetMaxOpenConns(20)
		db.SetMaxIdleConns(20)
		db.SetConnMaxIdleTime(5 * time.Minute)
		pool := &dbx{DB: db}
		// The lists pool plans with a random-read cost near the
		// sequential one (PostgreSQL's documented figure for SSDs and
		// cached data): at the default 4, a replay of one tenant among
		// 30 walks the primary key and filters out 29 rows of every 30
		// instead of reading that tenant's index (plan_test.go).
		lc := cc.Copy()
		if _, set := lc.RuntimeParams["random_page_cost"]; !set {
			lc.RuntimeParams["random_page_cost"] = "1.1"
		}
		lists := stdlib.OpenDB(*lc)
		lists.SetMaxOpenConns(s.listConns)
		lists.SetMaxIdleConns(s.listConns)
		lists.SetConnMaxIdleTime(5 * time.Minute)
		s.d, s.w, s.r, s.lists = pgDialect, pool, pool, &dbx{DB: lists}
	} else {
		if err := os.MkdirAll(filepath.Dir(dsn), 0o750); err != nil {
			return nil, fmt.Errorf("creating database directory: %w", err)
		}
		w, err := sql.Open("sqlite", sqliteDSN(dsn, sqliteWriter))
		if err != nil {
			return nil, fmt.Errorf("opening sqlite: %w", err)
		}
		// One writer: SQLite allows one at a time, and a pool of writers
		// only turns that into "database is locked" errors.
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(0)
		w.SetConnMaxIdleTime(0)
		r, err := sql.Open("sqlite", sqliteDSN(dsn, sqliteReader))
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("opening sqlite: %w", err)
		}
		r.SetMaxOpenConns(4)
		r.SetMaxIdleConns(4)
		s.d, s.w, s.r = sqliteDialect, &dbx{DB: w, rebind: true, wrote: s.wrote}, &dbx{DB: r, rebind: true}
		s.lists = s.r
		if err := s.startCheckpointer(dsn); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.sql = newStatements(s.d)
	s.goBackground(s.creator)
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if s.d.caps.ListenNotify {
		var schema string
		if err := s.r.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			s.Close()
			return nil, fmt.Errorf("reading the current schema: %w", err)
		}
		s.channel = "compute_" + schema
	}
	return s, nil
}

// SQLite connection roles: the one writer, the read-only pool, and the
// checkpointer (checkpoint.go), which writes only the database file.
const (
	sqliteReader = iota
	sqliteWriter
	sqliteCheckpointer
)

func sqliteDSN(path string, role int) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_time_format", "sqlite")
	switch role {
	case sqliteCheckpointer:
	case sqliteWriter:
		q.Set("_txlock", "immediate")
		// Checkpoints run beside the writer (checkpoint.go), not in
		// the commit that happens to fill the WAL.
		q.Add("_pragma", "wal_autocheckpoint(0)")
	default:
		q.Add("_pragma", "query_only(ON)")
	}
	return "file:" + path + "?" + q.Encode()
}

// Capabilities implements store.Store.
func (s *Store) Capabilities() store.Capabilities { return s.d.caps }

// Dialect implements store.Store.
func (s *Store) Dialect() string { return s.d.name }

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("pinging %s: %w", s.d.name, classify(err))
	}
	return nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.bgMu.Lock()
	if s.closed {
		s.bgMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.bgMu.Unlock()
	s.bg.Wait()
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	if s.lists != s.r {
		err = errors.Join(err, s.lists.Close())
	}
	return err
}

// goBackground runs f in a goroutine that Close stops and waits for: f's
// context is cancelled when Close is called. After Close it runs nothing
// and returns false.
func (s *Store) goBackground(f func(ctx context.Context)) bool {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.closed {
		return false
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-s.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		f(ctx)
	}()
	return true
}

// inTx runs fn in a write transaction, committing if it returns nil. A
// panic in fn rolls the transaction back before it propagates, so it cannot
// keep the connection (SQLite's only writer) and its row locks.
func (s *Store) inTx(ctx context.Context, fn func(tx *txn) error) (err error) {
	defer func() { s.noteFull(err) }()
	sqlTx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", classify(err))
	}
	tx := &txn{Tx: sqlTx, rebind: s.w.rebind}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if len(tx.events) > 0 {
		tx.notify(store.Notification{Kind: store.NotifyEvents})
	}
	var pending []store.Notification
	for _, n := range tx.notes {
		if !slices.Contains(tx.issued, n) {
			pending = append(pending, n)
		}
	}
	if err := s.notifyTx(ctx, tx, pending...); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("notifying: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", classify(err))
	}
	s.wrote()
	s.published(tx.notes...)
	if s.sink != nil && len(tx.events) > 0 {
		s.sink(tx.events)
	}
	return nil
}

// txn is a write transaction that collects what to announce once it has
// committed: the events it wrote and the notifications for other workers.
type txn struct {
	*sql.Tx
	rebind bool
	events []event.Event
	notes  []store.Notification
	issued []store.Notification // notes already sent by a statement
}

// notify queues notifications, sent with the commit (deduplicated).
func (tx *txn) notify(notes ...store.Notification) {
	for _, n := range notes {
		if !slices.Contains(tx.notes, n) {
			tx.notes = append(tx.notes, n)
		}
	}
}

// sent records a notification that a statement of the transaction has
// already issued (PostgreSQL's event insert): it is published after the
// commit like the others, but not sent again.
func (tx *txn) sent(n store.Notification) {
	tx.notify(n)
	if !slices.Contains(tx.issued, n) {
		tx.issued = append(tx.issued, n)
	}
}

func quote(ident string) string { return `"` + ident + `"` }
