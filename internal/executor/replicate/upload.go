package replicate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
)

// uploader puts inputs in Replicate's files API (replicate/replicate-go
// files.go at v0.26.0, d30ddaf: createFile; replicate/replicate-python
// replicate/file.py and helpers.py at 0110c2c): POST /v1/files, a
// multipart/form-data body whose part "content" carries the file (its
// filename and Content-Type), answering 201 with a file object whose
// urls.get is what a prediction's input names (helpers.encode_json:
// client.files.create(obj).urls["get"]).
type uploader struct {
	api  *hosted.Client
	base string
}

// Upload implements hosted.Uploader: the multipart body is streamed, the
// file's bytes between a part header and the closing boundary, with its
// length known when the file's is.
func (u *uploader) Upload(ctx context.Context, f hosted.File) (string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="content"; filename=%q`, f.Name))
	h.Set("Content-Type", f.ContentType)
	if _, err := mw.CreatePart(h); err != nil {
		return "", executor.Errorf(executor.InvalidInput, "encoding the upload of %s: %w", f.Name, err)
	}
	head := bytes.Clone(buf.Bytes())
	buf.Reset()
	if err := mw.Close(); err != nil {
		return "", executor.Errorf(executor.InvalidInput, "encoding the upload of %s: %w", f.Name, err)
	}
	tail := buf.Bytes()
	body := io.MultiReader(bytes.NewReader(head), f.Body, bytes.NewReader(tail))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.base+"/v1/files", body)
	if err != nil {
		return "", executor.Errorf(executor.InvalidInput, "uploading to Replicate: %w", err)
	}
	if f.Size >= 0 {
		req.ContentLength = int64(len(head)) + f.Size + int64(len(tail))
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	resp, err := u.api.Send(req)
	if err != nil {
		return "", err
	}
	if resp.Code < 200 || resp.Code > 299 { // 201 Created
		return "", hosted.StatusError("uploading "+f.Name+" to Replicate files", resp)
	}
	var file struct {
		URLs struct {
			Get string `json:"get"`
		} `json:"urls"`
	}
	if err := resp.Decode(&file); err != nil {
		return "", err
	}
	if !strings.HasPrefix(file.URLs.Get, "http") {
		return "", executor.Errorf(executor.ProviderError, "Replicate's file answer lacks urls.get")
	}
	return file.URLs.Get, nil
}
