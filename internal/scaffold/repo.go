package scaffold

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// FindRoot returns the nearest directory at or above dir that holds a
// go.mod: the repository root.
func FindRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod in %s or above it: run from the repository, or pass --dir", abs)
		}
	}
}

// ModulePath reads the module path from root/go.mod.
func ModulePath(root string) (string, error) {
	f, err := os.Open(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("%s has no module line", filepath.Join(root, "go.mod"))
}

var migrationFile = regexp.MustCompile(`^([0-9]+)_.*\.sql$`)

// versionLayout is the form of migration versions: a UTC timestamp.
const versionLayout = "20060102150405"

// NextVersion returns the version of a new migration: now in UTC as
// YYYYMMDDHHMMSS, or one more than the highest version of any migration
// under root (in a migrations/sqlite or migrations/postgres folder) when
// that is not lower. Migrations of every type share one version sequence.
func NextVersion(root string, now time.Time) (int64, error) {
	highest := int64(0)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "data" || d.Name() == "bin" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		dialect := filepath.Base(filepath.Dir(path))
		if (dialect != "sqlite" && dialect != "postgres") || filepath.Base(filepath.Dir(filepath.Dir(path))) != "migrations" {
			return nil
		}
		if m := migrationFile.FindStringSubmatch(d.Name()); m != nil {
			if v, err := strconv.ParseInt(m[1], 10, 64); err == nil {
				highest = max(highest, v)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("listing migrations: %w", err)
	}
	v, _ := strconv.ParseInt(now.UTC().Format(versionLayout), 10, 64)
	return max(v, highest+1), nil
}
