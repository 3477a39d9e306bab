package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/pressly/goose/v3"

	"github.com/computeserver/compute/internal/store"
)

//go:embed migrations
var coreMigrations embed.FS

// migrationFS merges the core migrations and every registered type's into
// one flat folder for the dialect. Versions are timestamps; two files with
// the same version are an error naming both owners.
func (s *Store) migrationFS() (fs.FS, map[int64]string, error) {
	merged := flatFS{}
	owner := map[int64]string{}
	add := func(src fs.FS, dir, who string) error {
		files, err := fs.Glob(src, dir+"/*.sql")
		if err != nil {
			return err
		}
		for _, f := range files {
			base := path.Base(f)
			num, _, ok := strings.Cut(base, "_")
			v, err := strconv.ParseInt(num, 10, 64)
			if !ok || err != nil {
				return fmt.Errorf("migration %s of %s: name must start with a numeric version and an underscore", base, who)
			}
			if prev, dup := owner[v]; dup {
				return fmt.Errorf("migration version %d of %s is also used by %s", v, who, prev)
			}
			data, err := fs.ReadFile(src, f)
			if err != nil {
				return err
			}
			owner[v] = who + "/" + base
			merged[base] = data
		}
		return nil
	}
	if err := add(coreMigrations, "migrations/"+s.d.name, "core"); err != nil {
		return nil, nil, err
	}
	for _, def := range s.reg.All() {
		if err := add(def.Migrations, s.d.name, "task type "+def.Name); err != nil {
			return nil, nil, err
		}
	}
	return merged, owner, nil
}

func (s *Store) provider(ctx context.Context) (*goose.Provider, map[int64]string, error) {
	fsys, owner, err := s.migrationFS()
	if err != nil {
		return nil, nil, fmt.Errorf("collecting migrations: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithAllowOutofOrder(true)}
	if s.d.migrationLock {
		// Several processes may start at once on an empty database: one
		// migrates, the others wait for it (SQLite's writer lock does this).
		locker, err := s.migrationLocker(ctx)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(s.d.goose, s.w.DB, fsys, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("preparing migrations: %w", err)
	}
	return p, owner, nil
}

// Migrate implements store.Store.
func (s *Store) Migrate(ctx context.Context) error {
	p, _, err := s.provider(ctx)
	if err != nil {
		return err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrating %s: %w", s.d.name, err)
	}
	for _, r := range results {
		s.log.Info("applied migration", "version", r.Source.Version, "file", path.Base(r.Source.Path), "duration", r.Duration)
	}
	return nil
}

// MigrationStatus implements store.Store.
func (s *Store) MigrationStatus(ctx context.Context) ([]store.MigrationState, error) {
	p, owner, err := s.provider(ctx)
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	out := make([]store.MigrationState, 0, len(st))
	for _, m := range st {
		out = append(out, store.MigrationState{
			Version:   m.Source.Version,
			Source:    owner[m.Source.Version],
			Applied:   m.State == goose.StateApplied,
			AppliedAt: m.AppliedAt,
		})
	}
	return out, nil
}
