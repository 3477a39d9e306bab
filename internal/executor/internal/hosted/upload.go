package hosted

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"path"
	"strings"

	"github.com/computeserver/compute/internal/executor"
)

// The values of upload_inputs: when an input the service cannot fetch is
// uploaded to its storage rather than inlined as a data URI.
const (
	// UploadLarge (the default) inlines an input up to
	// inline_input_max_bytes and uploads a larger one.
	UploadLarge = "large"
	// UploadAlways uploads every such input, whatever its size.
	UploadAlways = "always"
	// UploadNever inlines only: a larger input is refused.
	UploadNever = "never"
)

// DefaultUploadMax is the largest input uploaded when the settings say
// nothing: 100 MiB, fal's client's threshold for multipart uploads
// (fal_client MULTIPART_THRESHOLD), which we do not make.
const DefaultUploadMax = 100 << 20

// File is an input to upload: its name (the last element of its URL's
// path), its content type (sniffed from its first bytes), its size (-1
// when unknown) and its bytes, read once.
type File struct {
	Name, ContentType string
	Size              int64
	Body              io.Reader
}

// Uploader puts a file in a service's storage and returns the URL the
// service's models read it from. Its errors are classified (4xx, 5xx, 429
// as StatusError says; no answer as executor.FromTransport) and name no
// secret.
type Uploader interface {
	Upload(ctx context.Context, f File) (string, error)
}

// check reports settings that cannot work.
func (c Common) check() error {
	switch c.UploadInputs {
	case "", UploadLarge, UploadAlways, UploadNever:
	default:
		return fmt.Errorf("upload_inputs: want %s, %s or %s, got %q", UploadLarge, UploadAlways, UploadNever, c.UploadInputs)
	}
	if c.InlineInputMaxBytes < 0 || c.UploadMaxBytes < 0 {
		return errors.New("inline_input_max_bytes and upload_max_bytes must not be negative")
	}
	return nil
}

// handOver is how one executor hands its inputs over.
type handOver struct {
	inlineMax, uploadMax int64
	mode                 string
	up                   Uploader
}

func (c Common) handOver(up Uploader) handOver {
	h := handOver{inlineMax: c.InlineInputMaxBytes, uploadMax: c.UploadMaxBytes, mode: c.UploadInputs, up: up}
	if h.inlineMax <= 0 {
		h.inlineMax = DefaultInlineMax
	}
	if h.uploadMax <= 0 {
		h.uploadMax = DefaultUploadMax
	}
	if h.mode == "" {
		h.mode = UploadLarge
	}
	if up == nil {
		h.mode = UploadNever
	}
	return h
}

// openInput opens the input at url: as a stream when the job can
// (OpenInputStream), else read whole through OpenInput.
func openInput(ctx context.Context, job *executor.Job, url string) (io.ReadCloser, int64, error) {
	if job.OpenInputStream != nil {
		return job.OpenInputStream(ctx, url)
	}
	data, err := job.OpenInput(ctx, url)
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(bytes.NewReader(data)), int64(len(data)), nil
}

// input hands over the input at url, which the service cannot fetch: it
// is read through the job and inlined as a data URI when it fits and the
// mode allows, else streamed to the service's storage.
func (h handOver) input(ctx context.Context, job *executor.Job, field, url string) (string, error) {
	body, size, err := openInput(ctx, job, url)
	if err != nil {
		return "", executor.Classify(executor.InvalidInput, fmt.Errorf("input %s: reading %s: %w", field, redact(url), err))
	}
	defer body.Close()
	src := &readErr{r: body}
	rd := bufio.NewReaderSize(src, 512)
	var head []byte
	if h.mode != UploadAlways && (size < 0 || size <= h.inlineMax) {
		// Read up to one byte past the inline limit: what fits is inlined.
		head, err = io.ReadAll(io.LimitReader(rd, h.inlineMax+1))
		if err != nil {
			return "", executor.Classify(executor.InvalidInput, fmt.Errorf("input %s: reading %s: %w", field, redact(url), err))
		}
		if int64(len(head)) <= h.inlineMax {
			return "data:" + http.DetectContentType(head) + ";base64," + base64Of(head), nil
		}
	}
	if h.mode == UploadNever {
		what := "this executor has no provider storage to upload to"
		if h.up != nil {
			what = "upload_inputs is never"
		}
		return "", executor.Errorf(executor.InvalidInput,
			"input %s is over the %d-byte limit for inline data URIs (inline_input_max_bytes) and %s — give a public URL",
			field, h.inlineMax, what)
	}
	if size > h.uploadMax {
		return "", executor.Errorf(executor.InvalidInput, "input %s is %d bytes, over the %d-byte upload limit (upload_max_bytes)", field, size, h.uploadMax)
	}
	sniff := head
	if len(sniff) == 0 {
		sniff, _ = rd.Peek(512) // a short or failed peek sniffs what it got; a failure shows at the upload
	}
	cp := &capped{r: io.MultiReader(bytes.NewReader(head), rd), left: h.uploadMax}
	f := File{Name: nameOf(url), ContentType: http.DetectContentType(sniff), Size: size, Body: cp}
	got, err := h.up.Upload(ctx, f)
	switch {
	case err == nil:
		return got, nil
	case cp.over:
		return "", executor.Errorf(executor.InvalidInput, "input %s is over the %d-byte upload limit (upload_max_bytes)", field, h.uploadMax)
	case src.err != nil:
		// The input failed while it was being sent: ours, not the service's.
		return "", executor.Classify(executor.InvalidInput, fmt.Errorf("input %s: reading %s: %w", field, redact(url), src.err))
	}
	return "", fmt.Errorf("input %s: %w", field, err)
}

// errUploadTooLarge stops an upload of unknown size past upload_max_bytes.
var errUploadTooLarge = errors.New("input over upload_max_bytes")

// capped fails with errUploadTooLarge past left bytes.
type capped struct {
	r    io.Reader
	left int64
	over bool
}

func (c *capped) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		c.over = true
		return n, errUploadTooLarge
	}
	return n, err
}

// readErr remembers the first error of reading the input (not io.EOF), so
// an upload that failed because of it is not blamed on the service.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// nameOf is the file name an upload is given: the last element of the
// URL's path, "input" when it has none.
func nameOf(url string) string {
	p := url
	if u, err := neturl.Parse(url); err == nil {
		p = u.Path
	}
	name := path.Base(p)
	if name == "." || name == "/" || name == "" || strings.ContainsAny(name, "\"\r\n\\") {
		return "input"
	}
	return name
}
