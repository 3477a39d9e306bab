package replicatefake

import (
	"crypto/md5" //nolint:gosec // Replicate's etag and checksums.md5, not security
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// Replicate's files API, as its clients use it (replicate/replicate-go
// files.go at v0.26.0, commit d30ddaf: createFile, GetFile, DeleteFile;
// replicate/replicate-python at 0110c2c, branch main: replicate/file.py,
// replicate/helpers.py, tests/cassettes/file-operations.yaml, a recorded
// exchange): POST /v1/files takes multipart/form-data whose part "content"
// is the file (filename and Content-Type in its part header) and an
// optional "metadata" field of JSON, and answers 201 with a file object
// {id, name, content_type, size, etag (the md5), checksums {sha256, md5},
// metadata, created_at, expires_at (a day later in the recording), urls
// {get}}; GET /v1/files/{id} answers the object, DELETE /v1/files/{id}
// 204. A prediction's input names the file by urls.get (helpers.py:
// client.files.create(obj).urls["get"]); the fake's models read the bytes
// behind it with Uploaded.
//
// ⚠ Unconfirmed: the size limit of an upload (none here unless
// MaxFileBytes, then 413), the error bodies of this route (the problem
// details of §3.1 Errors here), and how long a file lives past expires_at.

// FileUpload is a recorded POST /v1/files.
type FileUpload struct {
	// ID is the file's id (empty when refused).
	ID string
	// Name and ContentType are the content part's filename and type.
	Name, ContentType string
	// Size and SHA256 describe the bytes received.
	Size   int64
	SHA256 string
	// Code is the HTTP status answered.
	Code int
}

// storedFile is an uploaded file: its object and bytes.
type storedFile struct {
	object map[string]any
	data   []byte
}

// FailNextFiles makes the next n POST /v1/files answer code (429 with
// Retry-After: 1).
func (f *Fake) FailNextFiles(n, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.failFiles = append(f.failFiles, code)
	}
}

// FileUploads returns every POST /v1/files received, in order.
func (f *Fake) FileUploads() []FileUpload {
	return f.fileUploads.All()
}

// Uploaded returns the bytes of the file a urls.get the fake answered
// names, so a fake model can check the input it received.
func (f *Fake) Uploaded(url string) ([]byte, bool) {
	i := strings.LastIndex(url, "/v1/files/")
	if i < 0 {
		return nil, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	sf, ok := f.stored[url[i+len("/v1/files/"):]]
	if !ok {
		return nil, false
	}
	return sf.data, true
}

// filesRoute routes /v1/files[/{id}] (segs without "v1").
func (f *Fake) filesRoute(w http.ResponseWriter, r *http.Request, segs []string) {
	switch {
	case r.Method == http.MethodPost && len(segs) == 1:
		f.createFile(w, r)
	case len(segs) == 2 && (r.Method == http.MethodGet || r.Method == http.MethodDelete):
		f.mu.Lock()
		sf, ok := f.stored[segs[1]]
		if ok && r.Method == http.MethodDelete {
			delete(f.stored, segs[1])
		}
		f.mu.Unlock()
		switch {
		case !ok:
			problem(w, http.StatusNotFound, "Not found", "The requested resource could not be found.")
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			fakekit.WriteJSON(w, http.StatusOK, sf.object)
		}
	default:
		problem(w, http.StatusNotFound, "Not found", "The requested resource could not be found.")
	}
}

// createFile answers POST /v1/files, reading the multipart body as a
// stream.
func (f *Fake) createFile(w http.ResponseWriter, r *http.Request) {
	rec := FileUpload{}
	refuse := func(code int, title, detail string) {
		rec.Code = code
		f.fileUploads.Add(rec)
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		problem(w, code, title, detail)
	}
	f.mu.Lock()
	code := 0
	if len(f.failFiles) > 0 {
		code, f.failFiles = f.failFiles[0], f.failFiles[1:]
	}
	f.mu.Unlock()
	if code != 0 {
		refuse(code, http.StatusText(code), "injected failure")
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		refuse(http.StatusBadRequest, "Invalid request", "the body must be multipart/form-data: "+err.Error())
		return
	}
	var data []byte
	found := false
	metadata := map[string]any{}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			refuse(http.StatusBadRequest, "Invalid request", "reading the multipart body: "+err.Error())
			return
		}
		switch part.FormName() {
		case "content":
			limit := int64(1 << 40)
			if f.cfg.MaxFileBytes > 0 {
				limit = f.cfg.MaxFileBytes
			}
			data, err = io.ReadAll(io.LimitReader(part, limit+1))
			if err != nil {
				refuse(http.StatusBadRequest, "Invalid request", "reading the content part: "+err.Error())
				return
			}
			if int64(len(data)) > limit {
				refuse(http.StatusRequestEntityTooLarge, "Request Entity Too Large", fmt.Sprintf("files are limited to %d bytes", limit))
				return
			}
			found = true
			rec.Name, rec.ContentType = part.FileName(), part.Header.Get("Content-Type")
		case "metadata":
			raw, _ := io.ReadAll(io.LimitReader(part, 1<<20))
			if json.Unmarshal(raw, &metadata) != nil {
				refuse(http.StatusBadRequest, "Invalid request", "metadata must be a JSON object")
				return
			}
		}
	}
	if !found {
		refuse(http.StatusBadRequest, "Invalid request", "the content part is required")
		return
	}
	if rec.Name == "" {
		rec.Name = "file"
	}
	if rec.ContentType == "" {
		rec.ContentType = "application/octet-stream"
	}
	sum, md := sha256.Sum256(data), md5.Sum(data) //nolint:gosec // checksum
	now := time.Now().UTC()
	f.mu.Lock()
	f.fileSeq++
	rec.ID = strings.TrimRight(base64.URLEncoding.EncodeToString([]byte(fmt.Sprintf("replicatefake-file-%08d", f.fileSeq))), "=")
	url := fakekit.BaseURL(r) + "/v1/files/" + rec.ID
	obj := map[string]any{
		"id": rec.ID, "name": rec.Name, "content_type": rec.ContentType, "size": len(data),
		"etag": hex.EncodeToString(md[:]), "checksums": map[string]string{"sha256": hex.EncodeToString(sum[:]), "md5": hex.EncodeToString(md[:])},
		"metadata": metadata, "created_at": now.Format(time.RFC3339Nano), "expires_at": now.Add(24 * time.Hour).Format(time.RFC3339Nano),
		"urls": map[string]string{"get": url},
	}
	f.stored[rec.ID] = &storedFile{object: obj, data: data}
	f.mu.Unlock()
	rec.Size, rec.SHA256, rec.Code = int64(len(data)), hex.EncodeToString(sum[:]), http.StatusCreated
	f.fileUploads.Add(rec)
	fakekit.WriteJSON(w, http.StatusCreated, obj)
}
