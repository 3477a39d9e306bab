package store

import "errors"

// The kinds of database failure a caller can act on. The SQL store wraps
// the driver's error with one of them (errors.Is finds both), so callers
// classify without knowing the database: the API answers 503 or 507 with
// Retry-After, never the driver's message.
var (
	// ErrUnavailable means the database cannot be reached or refuses work
	// for now (connection refused or lost, server shutting down, too many
	// connections, locked past the busy timeout): retrying later may
	// succeed.
	ErrUnavailable = errors.New("the database is unavailable")
	// ErrFull means the database cannot grow: its disk (or its configured
	// size limit) is full. Reads still work; writes fail until space is
	// freed.
	ErrFull = errors.New("the database is full")
	// ErrInvalidText means a text value cannot be stored: it holds a NUL
	// byte or is not valid UTF-8 (PostgreSQL refuses both). The API
	// refuses such input before it reaches the store; this kind only
	// keeps a value that slipped through from being a 500.
	ErrInvalidText = errors.New("a text value contains a NUL byte or invalid UTF-8")
)
