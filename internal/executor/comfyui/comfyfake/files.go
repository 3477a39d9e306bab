package comfyfake

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"
)

// The three directories of a ComfyUI server (executors.md §1.1 /view and
// /upload/image "type"). Files live in memory; input and output survive
// Restart like files on disk, temp is wiped (§1.3 "Temp files are deleted at
// startup and exit").
const (
	dirInput  = "input"
	dirOutput = "output"
	dirTemp   = "temp"
)

// errPathEscape is a subfolder or file name that leaves its directory.
var errPathEscape = errors.New("path escapes its directory")

// fileStore holds the server's files, keyed "dir/relative/path".
type fileStore struct {
	mu    sync.Mutex
	files map[string][]byte
}

func newFileStore() *fileStore { return &fileStore{files: map[string][]byte{}} }

// fileKey joins dir and a relative path, or fails when the path escapes
// dir (server.py compares os.path.commonpath with the directory).
func fileKey(dir, rel string) (string, error) {
	if path.IsAbs(rel) {
		return "", errPathEscape
	}
	clean := path.Clean(rel)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", errPathEscape
	}
	if clean == "." {
		return dir, nil
	}
	return dir + "/" + clean, nil
}

// annotated reads a file reference the way folder_paths.annotated_filepath
// does: "name.png [output]" names a file in output/, a plain name one in
// defaultDir.
func annotated(name, defaultDir string) string {
	dir := defaultDir
	for _, d := range []string{dirInput, dirOutput, dirTemp} {
		if cut, ok := strings.CutSuffix(name, " ["+d+"]"); ok {
			name, dir = cut, d
			break
		}
	}
	key, err := fileKey(dir, name)
	if err != nil {
		return ""
	}
	return key
}

func (f *fileStore) get(key string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, ok := f.files[key]
	return data, ok
}

func (f *fileStore) put(key string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[key] = data
}

// dropTemp deletes temp/, as ComfyUI does at start-up (main.py cleanup_temp).
func (f *fileStore) dropTemp() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for key := range f.files {
		if strings.HasPrefix(key, dirTemp+"/") {
			delete(f.files, key)
		}
	}
}

// saveBatch stores each of data as {base}_{counter:05}_.png in
// dir/subfolder, base's "%batch_num%" replaced by the image's index in the
// batch, the counter one past the highest already there for base
// (folder_paths.get_save_image_path) and incremented per image
// (nodes.py SaveImage.save_images), and returns the file names in batch
// order.
func (f *fileStore) saveBatch(dir, subfolder, base string, data [][]byte) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	folder, err := fileKey(dir, subfolder)
	if err != nil {
		folder = dir
	}
	counter := 0
	for key := range f.files {
		rest, ok := strings.CutPrefix(key, folder+"/")
		if !ok || strings.Contains(rest, "/") {
			continue
		}
		digits, ok := strings.CutPrefix(rest, base+"_")
		if !ok {
			continue
		}
		digits, _, _ = strings.Cut(digits, "_")
		if n, err := strconv.Atoi(digits); err == nil && n > counter {
			counter = n
		}
	}
	names := make([]string, len(data))
	for i, d := range data {
		counter++
		names[i] = fmt.Sprintf("%s_%05d_.png", strings.ReplaceAll(base, "%batch_num%", strconv.Itoa(i)), counter)
		f.files[folder+"/"+names[i]] = d
	}
	return names
}

// upload stores an uploaded file as server.py image_upload does: unless
// overwrite, a name already taken by different bytes becomes "x (1).png",
// "x (2).png", …; a name holding identical bytes is reused without writing
// (executors.md §1.1, §1.7 "upload name collision"). It returns the final
// name and whether an identical file was reused.
func (f *fileStore) upload(dir, subfolder, filename string, data []byte, overwrite bool) (string, bool, error) {
	if _, err := fileKey(dir, path.Join(subfolder, filename)); err != nil {
		return "", false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	stem, ext := splitExt(filename)
	name := filename
	key, _ := fileKey(dir, path.Join(subfolder, name))
	if !overwrite {
		for i := 1; ; i++ {
			existing, taken := f.files[key]
			if !taken {
				break
			}
			if bytes.Equal(existing, data) {
				return name, true, nil
			}
			name = fmt.Sprintf("%s (%d)%s", stem, i, ext)
			key, _ = fileKey(dir, path.Join(subfolder, name))
		}
	}
	f.files[key] = data
	return name, false, nil
}

// splitExt is Python's os.path.splitext: leading dots do not start an
// extension (".bashrc" has none).
func splitExt(name string) (string, string) {
	base := path.Base(name)
	trimmed := strings.TrimLeft(base, ".")
	i := strings.LastIndex(trimmed, ".")
	if i < 0 {
		return name, ""
	}
	ext := trimmed[i:]
	return strings.TrimSuffix(name, ext), ext
}
