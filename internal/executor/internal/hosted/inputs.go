package hosted

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	neturl "net/url"
	"strings"

	"github.com/computeserver/compute/internal/executor"
)

// DefaultInlineMax is the largest input handed to a service inline as a
// data URI when the executor's settings say nothing.
const DefaultInlineMax = 4 << 20

// internalFields are task fields that are ours, not a model's input: ids
// of the product backend and of the workflow, and what earlier runs
// recorded.
var internalFields = map[string]bool{
	"backend_generation_id": true, "backend_prediction_id": true, "workflow_id": true,
	"comfy_prompt_id": true, "comfy_server_url": true, "comfyui_retry_server_urls": true,
	"comfy_workflow": true, "comfy_workflow_data": true, "result_image_path": true,
}

// Fields decodes a job's fields into a map of the model's input: null
// values and our internal fields are dropped, numbers kept exact.
func Fields(job *executor.Job) (map[string]any, error) {
	in := map[string]any{}
	if len(job.Fields) == 0 {
		return in, nil
	}
	dec := json.NewDecoder(bytes.NewReader(job.Fields))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		return nil, executor.Errorf(executor.InvalidInput, "reading the task's fields: %w", err)
	}
	for k, v := range in {
		if v == nil || internalFields[k] {
			delete(in, k)
		}
	}
	return in, nil
}

// HandOverURLs replaces, in the input, the value of every string field
// whose name ends in _url, and every string in a list field whose name
// ends in _urls, by what the service can fetch (HandOver).
func (c Common) HandOverURLs(ctx context.Context, job *executor.Job, in map[string]any, up Uploader) error {
	h := c.handOver(up)
	for k, v := range in {
		switch x := v.(type) {
		case string:
			if !strings.HasSuffix(k, "_url") || x == "" {
				continue
			}
			got, err := h.handOver(ctx, job, k, x)
			if err != nil {
				return err
			}
			in[k] = got
		case []any:
			if !strings.HasSuffix(k, "_urls") {
				continue
			}
			for i, e := range x {
				s, ok := e.(string)
				if !ok || s == "" {
					continue
				}
				got, err := h.handOver(ctx, job, fmt.Sprintf("%s[%d]", k, i), s)
				if err != nil {
					return err
				}
				x[i] = got
			}
		}
	}
	return nil
}

// HandOver returns what a hosted service can fetch for the input at url
// (field names it in errors). A data URI is handed over as it is; one of
// our artifacts in a store that presigns (job.PresignInput) as a
// presigned URL when that URL is public; a public http(s) URL as it is. Anything else — one of our artifacts, a loopback
// or private address — the service cannot reach: it is read through the
// job and inlined as a data URI of at most inline_input_max_bytes, or
// streamed to the service's storage through up (upload_inputs says
// which; up nil: inline only) and the URL the storage returned handed
// over.
func (c Common) HandOver(ctx context.Context, job *executor.Job, field, url string, up Uploader) (string, error) {
	return c.handOver(up).handOver(ctx, job, field, url)
}

func (h handOver) handOver(ctx context.Context, job *executor.Job, field, url string) (string, error) {
	if strings.HasPrefix(url, "data:") {
		return url, nil
	}
	if job.PresignInput != nil {
		// One of our artifacts in a bucket the service can reach: it
		// reads it from there, whatever its size.
		signed, ok, err := job.PresignInput(ctx, url)
		if err != nil {
			return "", executor.Classify(executor.InvalidInput, fmt.Errorf("input %s: %s: %w", field, redact(url), err))
		}
		if ok && Public(signed) {
			return signed, nil
		}
	}
	if Public(url) {
		return url, nil
	}
	if job.OpenInput == nil && job.OpenInputStream == nil {
		return "", executor.Errorf(executor.InvalidInput, "input %s: %s is not a public URL, and this task type cannot read it to upload it", field, redact(url))
	}
	return h.input(ctx, job, field, url)
}

func base64Of(data []byte) string { return base64.StdEncoding.EncodeToString(data) }

// Public reports whether a hosted service can fetch url: http(s) to a host
// that is not loopback, private, link-local or a local name.
func Public(url string) bool {
	u, err := neturl.Parse(url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if ip := net.ParseIP(host); ip != nil {
		return !(ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsLinkLocalMulticast())
	}
	if host == "localhost" || !strings.Contains(host, ".") {
		return false
	}
	for _, suffix := range []string{".localhost", ".local", ".internal", ".lan", ".home.arpa"} {
		if strings.HasSuffix(host, suffix) {
			return false
		}
	}
	return true
}

// Merge sets every key of extra in in (the settings' fixed input wins
// over the task's).
func Merge(in, extra map[string]any) {
	for k, v := range extra {
		in[k] = v
	}
}
