package sqlstore

import (
	"bytes"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"
)

// flatFS is a read-only folder of files held in memory: the merged
// migrations of the core and every type, which goose reads as one set.
type flatFS map[string][]byte

var (
	_ fs.ReadDirFS  = flatFS(nil)
	_ fs.ReadFileFS = flatFS(nil)
)

// Open opens a file of the folder, or the folder itself as ".".
func (f flatFS) Open(name string) (fs.File, error) {
	if name == "." {
		return &flatDir{entries: f.entries()}, nil
	}
	data, ok := f[name]
	if !ok || !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &flatFile{info: flatInfo{name: name, size: int64(len(data))}, Reader: bytes.NewReader(data)}, nil
}

// ReadFile returns a copy of a file's contents.
func (f flatFS) ReadFile(name string) ([]byte, error) {
	data, ok := f[name]
	if !ok {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: fs.ErrNotExist}
	}
	return slices.Clone(data), nil
}

// ReadDir lists the folder, sorted by name; it has no subfolders.
func (f flatFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name != "." {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	return f.entries(), nil
}

func (f flatFS) entries() []fs.DirEntry {
	out := make([]fs.DirEntry, 0, len(f))
	for name, data := range f {
		out = append(out, fs.FileInfoToDirEntry(flatInfo{name: name, size: int64(len(data))}))
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

type flatFile struct {
	info flatInfo
	*bytes.Reader
}

func (f *flatFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *flatFile) Close() error               { return nil }

type flatDir struct {
	entries []fs.DirEntry
	offset  int
}

func (d *flatDir) Stat() (fs.FileInfo, error) { return flatInfo{name: ".", dir: true}, nil }
func (d *flatDir) Close() error               { return nil }
func (d *flatDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: ".", Err: fs.ErrInvalid}
}

// ReadDir lists the folder's files n at a time (all of them for n <= 0).
func (d *flatDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.offset:]
	if n <= 0 {
		d.offset = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.offset += n
	return rest[:n], nil
}

type flatInfo struct {
	name string
	size int64
	dir  bool
}

func (i flatInfo) Name() string { return i.name }
func (i flatInfo) Size() int64  { return i.size }
func (i flatInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i flatInfo) ModTime() time.Time { return time.Time{} }
func (i flatInfo) IsDir() bool        { return i.dir }
func (i flatInfo) Sys() any           { return nil }
