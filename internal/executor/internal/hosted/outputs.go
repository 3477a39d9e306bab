package hosted

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"image"
	_ "image/gif"  // decode output sizes
	_ "image/jpeg" // decode output sizes
	_ "image/png"  // decode output sizes
	"io"
	"mime"
	"net/http"
	neturl "net/url"
	"path"
	"slices"
	"sort"
	"strings"

	_ "golang.org/x/image/webp" // decode output sizes

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/task"
)

// maxOutput bounds one downloaded output file.
const maxOutput = 512 << 20

// URLs returns the output files a result names: every string in v (a
// decoded JSON value) that is an http(s) URL or a data URI, in document
// order with object keys sorted, each once.
func URLs(v any) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			if (strings.HasPrefix(x, "http://") || strings.HasPrefix(x, "https://") || strings.HasPrefix(x, "data:")) && !slices.Contains(out, x) {
				out = append(out, x)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(x[k])
			}
		}
	}
	walk(v)
	return out
}

// Download fetches every output at urls (http(s) or data URIs) and stores
// it through job.Put as "output-N.EXT", at once: hosted services' output
// URLs expire. An output that cannot be fetched fails the job as
// ProviderError (or as its HTTP answer classifies).
func Download(ctx context.Context, hc *http.Client, job *executor.Job, urls []string) ([]task.Artifact, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	arts := make([]task.Artifact, 0, len(urls))
	for i, u := range urls {
		data, ctype, err := fetch(ctx, hc, u)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("output-%d%s", i, extension(u, ctype))
		art, err := job.Put(ctx, name, ctype, data)
		if err != nil {
			return nil, fmt.Errorf("storing output %s: %w", name, err)
		}
		if cfg, _, err := image.DecodeConfig(bytes.NewReader(data)); err == nil {
			art.Width, art.Height = cfg.Width, cfg.Height
		}
		arts = append(arts, art)
	}
	return arts, nil
}

// fetch reads one output.
func fetch(ctx context.Context, hc *http.Client, u string) ([]byte, string, error) {
	if rest, ok := strings.CutPrefix(u, "data:"); ok {
		meta, payload, found := strings.Cut(rest, ",")
		if !found {
			return nil, "", executor.Errorf(executor.ProviderError, "output is a malformed data URI")
		}
		ctype := strings.TrimSuffix(meta, ";base64")
		var data []byte
		var err error
		if strings.HasSuffix(meta, ";base64") {
			data, err = base64.StdEncoding.DecodeString(payload)
		} else {
			var s string
			s, err = neturl.PathUnescape(payload)
			data = []byte(s)
		}
		if err != nil {
			return nil, "", executor.Errorf(executor.ProviderError, "output data URI: %w", err)
		}
		if ctype == "" {
			ctype = http.DetectContentType(data)
		}
		return data, ctype, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", executor.Errorf(executor.ProviderError, "output URL %s: %w", redact(u), err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", executor.FromTransport(fmt.Errorf("downloading output %s: %w", redact(u), unwrapURL(err)))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, "", StatusError("downloading output "+redact(u), &Response{Code: resp.StatusCode, Header: resp.Header, Body: body})
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxOutput+1))
	if err != nil {
		return nil, "", executor.FromTransport(fmt.Errorf("downloading output %s: %w", redact(u), err))
	}
	if len(data) > maxOutput {
		return nil, "", executor.Errorf(executor.ProviderError, "output %s is over %d bytes", redact(u), maxOutput)
	}
	ctype := resp.Header.Get("Content-Type")
	if ctype == "" || ctype == "application/octet-stream" {
		ctype = http.DetectContentType(data)
	}
	return data, ctype, nil
}

// extension is the file extension of an output: its URL path's (up to six
// characters, or .safetensors, the LoRA trainers' weights), else its
// content type's.
func extension(u, ctype string) string {
	if !strings.HasPrefix(u, "data:") {
		if p, err := neturl.Parse(u); err == nil {
			if ext := path.Ext(p.Path); ext != "" && (len(ext) <= 6 || ext == ".safetensors") {
				return ext
			}
		}
	}
	base, _, _ := strings.Cut(ctype, ";")
	switch base {
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/webp":
		return ".webp"
	case "text/plain":
		return ".txt"
	case "application/json":
		return ".json"
	case "application/zip":
		return ".zip"
	}
	if exts, err := mime.ExtensionsByType(base); err == nil && len(exts) > 0 {
		return exts[0]
	}
	return ".bin"
}

// Collect stores the files a finished job's output names (URLs) and
// returns them with data, reporting 92 % while it downloads and 100 when
// done. An output that names no file (a text model's answer) goes into
// data["output"].
func Collect(ctx context.Context, m *Meter, hc *http.Client, job *executor.Job, output any, data map[string]any) (*executor.Output, error) {
	if err := m.Report(ctx, 92, "storing outputs"); err != nil {
		return nil, err
	}
	arts, err := Download(ctx, hc, job, URLs(output))
	if err != nil {
		return nil, err
	}
	if err := m.Report(ctx, 100, "done"); err != nil {
		return nil, err
	}
	if len(arts) == 0 {
		data["output"] = output
	}
	return &executor.Output{Artifacts: arts, Data: data}, nil
}
