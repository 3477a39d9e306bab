package store

import (
	"encoding/base64"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/task"
)

// CursorAfter is the list cursor (Page.NextCursor) of the page that
// continues after t, in the list's order (newest first).
func CursorAfter(t *task.Task) string { return EncodeCursor(t.CreatedAt, t.ID) }

// EncodeCursor makes the opaque cursor of a keyset position.
func EncodeCursor(at time.Time, id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + id.String()))
}

// DecodeCursor parses a cursor made by EncodeCursor; ErrBadCursor when it
// is not one.
func DecodeCursor(c string) (time.Time, uuid.UUID, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, uuid.UUID{}, ErrBadCursor
	}
	ts, ids, ok := strings.Cut(string(raw), "|")
	if !ok {
		return time.Time{}, uuid.UUID{}, ErrBadCursor
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return time.Time{}, uuid.UUID{}, ErrBadCursor
	}
	id, err := uuid.Parse(ids)
	if err != nil {
		return time.Time{}, uuid.UUID{}, ErrBadCursor
	}
	return at.UTC(), id, nil
}
