// Package artifact stores the files tasks produce and opens the files they
// take as input. The default store is a local directory under the data dir
// (Local); an S3-compatible bucket is the other (S3, COMPUTE_ARTIFACTS_URL).
// Both keep the same keys: "tasks/<task id>/<name>".
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/task"
)

// ErrNotFound means no artifact has that key.
var ErrNotFound = errors.New("artifact not found")

// ErrInvalidKey means a key is not a safe relative path.
var ErrInvalidKey = errors.New("invalid artifact key")

// Store keeps artifacts by key ("tasks/<task id>/<name>"). Every method
// refuses a key that ValidateKey refuses with ErrInvalidKey.
type Store interface {
	// Put stores data under key and returns its descriptor (without URL).
	// A reader never sees a partial artifact.
	Put(ctx context.Context, key, contentType string, data []byte) (task.Artifact, error)
	// Open returns the artifact's content and its descriptor (without
	// URL or SHA256); ErrNotFound when there is none.
	Open(ctx context.Context, key string) (io.ReadSeekCloser, task.Artifact, error)
	// Stat returns the artifact's descriptor (without URL or SHA256);
	// ErrNotFound when there is none.
	Stat(ctx context.Context, key string) (task.Artifact, error)
	// Delete removes the artifact; removing a missing one is not an error.
	Delete(ctx context.Context, key string) error
	// ListTask returns the artifacts of a task (TaskKey(taskID, ...)) in
	// key order, each with its size and modification time.
	ListTask(ctx context.Context, taskID string) ([]Object, error)
	// DeleteTask removes every artifact of a task and returns how many it
	// removed; a task without artifacts is not an error.
	DeleteTask(ctx context.Context, taskID string) (int, error)
}

// Object is a stored artifact as a listing sees it.
type Object struct {
	// Key is the artifact's key.
	Key string
	// Size is its length in bytes.
	Size int64
	// Modified is when it was last written.
	Modified time.Time
}

// Presigner is implemented by stores that can hand out a URL through which
// anyone may download an artifact for a while, without our API (S3).
type Presigner interface {
	// Presign returns a GET URL of the artifact at key valid for ttl. It
	// does not check that the artifact exists.
	Presign(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// Locator is implemented by stores whose artifacts have a URL of their
// own that tasks may name as input (S3: s3://bucket/prefix/<key>).
type Locator interface {
	// KeyOf returns the key of the artifact u names, and whether u names
	// one of this store's artifacts at all.
	KeyOf(u *url.URL) (string, bool)
}

// validTaskID refuses a task id that is not one key segment.
func validTaskID(taskID string) error {
	if !segment.MatchString(taskID) || strings.Contains(taskID, "..") {
		return fmt.Errorf("%w: task id %q", ErrInvalidKey, taskID)
	}
	return nil
}

var segment = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidateKey reports whether key is a relative path of safe segments.
func ValidateKey(key string) error {
	if key == "" || len(key) > 512 {
		return ErrInvalidKey
	}
	for _, s := range strings.Split(key, "/") {
		if !segment.MatchString(s) || strings.Contains(s, "..") {
			return fmt.Errorf("%w: %q", ErrInvalidKey, key)
		}
	}
	return nil
}

// TaskKey is the key of a task's output named name.
func TaskKey(taskID, name string) string { return "tasks/" + taskID + "/" + name }

// TaskIDOf returns the task id part of a task artifact key.
func TaskIDOf(key string) (string, bool) {
	parts := strings.Split(key, "/")
	if len(parts) < 3 || parts[0] != "tasks" {
		return "", false
	}
	return parts[1], true
}

// Local is a Store in a directory.
type Local struct {
	dir string
}

var _ Store = (*Local)(nil)

// NewLocal returns a store rooted at dir, creating it if needed.
func NewLocal(dir string) (*Local, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating artifact directory: %w", err)
	}
	return &Local{dir: dir}, nil
}

// Put implements Store. The file is written to a temporary name and renamed,
// so a reader never sees a partial artifact.
func (l *Local) Put(_ context.Context, key, contentType string, data []byte) (task.Artifact, error) {
	if err := ValidateKey(key); err != nil {
		return task.Artifact{}, err
	}
	p := filepath.Join(l.dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return task.Artifact{}, fmt.Errorf("storing artifact: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return task.Artifact{}, fmt.Errorf("storing artifact: %w", err)
	}
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), p)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return task.Artifact{}, fmt.Errorf("storing artifact: %w", werr)
	}
	sum := sha256.Sum256(data)
	if contentType == "" {
		contentType = contentTypeOf(key)
	}
	return task.Artifact{Key: key, ContentType: contentType, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// Open implements Store.
func (l *Local) Open(_ context.Context, key string) (io.ReadSeekCloser, task.Artifact, error) {
	if err := ValidateKey(key); err != nil {
		return nil, task.Artifact{}, err
	}
	f, err := os.Open(filepath.Join(l.dir, filepath.FromSlash(key)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, task.Artifact{}, ErrNotFound
	}
	if err != nil {
		return nil, task.Artifact{}, fmt.Errorf("opening artifact: %w", err)
	}
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		f.Close()
		return nil, task.Artifact{}, ErrNotFound
	}
	return f, task.Artifact{Key: key, ContentType: contentTypeOf(key), Size: st.Size()}, nil
}

// Stat implements Store.
func (l *Local) Stat(_ context.Context, key string) (task.Artifact, error) {
	if err := ValidateKey(key); err != nil {
		return task.Artifact{}, err
	}
	st, err := os.Stat(filepath.Join(l.dir, filepath.FromSlash(key)))
	if errors.Is(err, os.ErrNotExist) || (err == nil && !st.Mode().IsRegular()) {
		return task.Artifact{}, ErrNotFound
	}
	if err != nil {
		return task.Artifact{}, fmt.Errorf("reading artifact %s: %w", key, err)
	}
	return task.Artifact{Key: key, ContentType: contentTypeOf(key), Size: st.Size()}, nil
}

// Delete implements Store.
func (l *Local) Delete(_ context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(l.dir, filepath.FromSlash(key)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("deleting artifact %s: %w", key, err)
	}
	return nil
}

// ListTask implements Store. Temporary files of writes in progress are
// not listed.
func (l *Local) ListTask(_ context.Context, taskID string) ([]Object, error) {
	if err := validTaskID(taskID); err != nil {
		return nil, err
	}
	root := filepath.Join(l.dir, "tasks", taskID)
	var objs []Object
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) && p == root {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(l.dir, p)
		if err != nil {
			return err
		}
		objs = append(objs, Object{Key: filepath.ToSlash(rel), Size: info.Size(), Modified: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the artifacts of task %s: %w", taskID, err)
	}
	// A walk visits a directory's names in order, which is not the keys'
	// order when a name is a prefix of another ("a/x" and "a.b").
	slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.Key, b.Key) })
	return objs, nil
}

// DeleteTask implements Store: it removes the task's directory.
func (l *Local) DeleteTask(ctx context.Context, taskID string) (int, error) {
	objs, err := l.ListTask(ctx, taskID)
	if err != nil {
		return 0, err
	}
	if err := os.RemoveAll(filepath.Join(l.dir, "tasks", taskID)); err != nil {
		return 0, fmt.Errorf("deleting the artifacts of task %s: %w", taskID, err)
	}
	return len(objs), nil
}

func contentTypeOf(key string) string {
	if ct := mime.TypeByExtension(path.Ext(key)); ct != "" {
		return ct
	}
	return "application/octet-stream"
}
