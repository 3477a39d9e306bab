package hosted

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
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
// whose name ends in _url by what the service can fetch (HandOver).
func HandOverURLs(ctx context.Context, job *executor.Job, in map[string]any, inlineMax int64) error {
	for k, v := range in {
		s, ok := v.(string)
		if !ok || !strings.HasSuffix(k, "_url") || s == "" {
			continue
		}
		got, err := HandOver(ctx, job, k, s, inlineMax)
		if err != nil {
			return err
		}
		in[k] = got
	}
	return nil
}

// HandOver returns what a hosted service can fetch for the input at url
// (field names it in errors). A public http(s) URL is handed over as it
// is. Anything else — one of our artifacts, a loopback or private address
// — the service cannot reach: it is read through job.OpenInput and inlined
// as a data URI of at most inlineMax bytes. Uploading larger inputs to a
// provider's file storage is not implemented: such an input is refused as
// invalid input saying so.
func HandOver(ctx context.Context, job *executor.Job, field, url string, inlineMax int64) (string, error) {
	if strings.HasPrefix(url, "data:") || Public(url) {
		return url, nil
	}
	if job.OpenInput == nil {
		return "", executor.Errorf(executor.InvalidInput, "input %s: %s is not a public URL, and this task type cannot read it to upload it", field, redact(url))
	}
	data, err := job.OpenInput(ctx, url)
	if err != nil {
		return "", executor.Classify(executor.InvalidInput, fmt.Errorf("input %s: reading %s: %w", field, redact(url), err))
	}
	if inlineMax <= 0 {
		inlineMax = DefaultInlineMax
	}
	if int64(len(data)) > inlineMax {
		return "", executor.Errorf(executor.InvalidInput,
			"input %s is %d bytes, over the %d-byte limit for inline data URIs (inline_input_max_bytes); uploading larger inputs to the provider's storage is not implemented yet — give a public URL",
			field, len(data), inlineMax)
	}
	return "data:" + http.DetectContentType(data) + ";base64," + base64.StdEncoding.EncodeToString(data), nil
}

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
