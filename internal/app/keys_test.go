package app_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/testutil/logbuf"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// open builds a process with app.New (without serving), runs fn on it and
// closes it; it returns what the process logged.
func open(t *testing.T, cfg config.Config, opts app.Options, fn func(a *app.App)) string {
	t.Helper()
	var logs logbuf.Buffer
	a, err := app.New(context.Background(), cfg, opts, logs.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if fn != nil {
		fn(a)
	}
	t.Log(logs.String())
	return logs.String()
}

// activeKeys counts the active keys.
func activeKeys(t *testing.T, a *app.App) int {
	t.Helper()
	n, err := a.Store.CountAPIKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOnlyAPIProcessesMakeTheFirstKey: a worker started on an empty
// database makes no key (it has no port to use one on, and its log is not
// where operators look for it); the first serve/api start does, once.
func TestOnlyAPIProcessesMakeTheFirstKey(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			cfg := testserver.Config(t, dialect, "")
			logs := open(t, cfg, app.Options{Workers: true, NoAPI: true, Version: "test"}, func(a *app.App) {
				if n := activeKeys(t, a); n != 0 {
					t.Errorf("a worker on an empty database made %d keys", n)
				}
			})
			if strings.Contains(logs, "api_key=") {
				t.Errorf("a worker logged a key:\n%s", logs)
			}
			cfg.Workers = 0
			logs = open(t, cfg, app.Options{Version: "test"}, func(a *app.App) {
				if n := activeKeys(t, a); n != 1 {
					t.Errorf("the first api start left %d keys, want 1", n)
				}
			})
			if strings.Count(logs, "api_key=") != 1 {
				t.Errorf("the first api start did not log its key once:\n%s", logs)
			}
		})
	}
}

// TestRevokedConfiguredKeyIsReplaced: with COMPUTE_API_KEY as the only key,
// revoking it and starting again with the same variable used to leave the
// server with no usable key; a start with no active key generates one and
// logs it once, and the revoked key stays revoked.
func TestRevokedConfiguredKeyIsReplaced(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			const configured = "the-configured-admin-key-0123"
			cfg := testserver.Config(t, dialect, configured)
			cfg.Workers = 0
			opts := app.Options{Version: "test"}
			logs := open(t, cfg, opts, func(a *app.App) {
				keys, err := a.Store.ListAPIKeys(context.Background())
				if err != nil || len(keys) != 1 {
					t.Fatalf("keys %v, %v: want COMPUTE_API_KEY alone", keys, err)
				}
				if _, err := a.Store.RevokeAPIKey(context.Background(), keys[0].ID); err != nil {
					t.Fatal(err)
				}
			})
			if strings.Contains(logs, "api_key=") {
				t.Errorf("a start with COMPUTE_API_KEY generated a key:\n%s", logs)
			}
			logs = open(t, cfg, opts, func(a *app.App) {
				if n := activeKeys(t, a); n != 1 {
					t.Errorf("after revoking the only key, the start left %d active keys, want 1 generated", n)
				}
				if _, err := a.Store.LookupAPIKey(context.Background(), apikey.Hash(configured)); !errors.Is(err, store.ErrKeyRevoked) {
					t.Errorf("the revoked COMPUTE_API_KEY: %v, want still revoked", err)
				}
			})
			if strings.Count(logs, "api_key=") != 1 || !strings.Contains(logs, "revoked") {
				t.Errorf("want the revoked-key warning and the new key logged once:\n%s", logs)
			}
			logs = open(t, cfg, opts, func(a *app.App) {
				if n := activeKeys(t, a); n != 1 {
					t.Errorf("the start after that left %d active keys, want 1", n)
				}
			})
			if strings.Contains(logs, "api_key=") {
				t.Errorf("a start with an active key generated another:\n%s", logs)
			}
		})
	}
}
