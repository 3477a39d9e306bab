// Package artifact stores the files tasks produce and opens the files they
// take as input. The default store is a local directory under the data dir.
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/computeserver/compute/internal/task"
)

// ErrNotFound means no artifact has that key.
var ErrNotFound = errors.New("artifact not found")

// ErrInvalidKey means a key is not a safe relative path.
var ErrInvalidKey = errors.New("invalid artifact key")

// Store keeps artifacts by key ("tasks/<task id>/<name>").
type Store interface {
	// Put stores data under key and returns its descriptor (without URL).
	Put(ctx context.Context, key, contentType string, data []byte) (task.Artifact, error)
	// Open returns the artifact's content and its descriptor.
	Open(ctx context.Context, key string) (io.ReadSeekCloser, task.Artifact, error)
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

func contentTypeOf(key string) string {
	if ct := mime.TypeByExtension(path.Ext(key)); ct != "" {
		return ct
	}
	return "application/octet-stream"
}
