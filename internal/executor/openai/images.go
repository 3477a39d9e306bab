package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
	"github.com/computeserver/compute/internal/executor/internal/llm"
	"github.com/computeserver/compute/internal/task"
)

// imagesAnswer is the images response envelope (§4.1 Images).
type imagesAnswer struct {
	Data []struct {
		B64JSON       string `json:"b64_json"`
		URL           string `json:"url"`
		RevisedPrompt string `json:"revised_prompt"`
	} `json:"data"`
	Usage json.RawMessage `json:"usage"`
}

// image makes an image: POST /images/generations from the prompt, or
// POST /images/edits (multipart) when the task gives an input image
// (edit_image always; text_to_image with a reference image). Every image
// of the answer is stored: b64_json decoded, a URL downloaded at once.
func (e *Executor) image(ctx context.Context, job *executor.Job, f *llm.Fields, m *hosted.Meter) (*executor.Output, error) {
	model := f.ModelFor(e.models, job.Type)
	var req *http.Request
	var err error
	if f.ImageURL == "" {
		body := map[string]any{"model": model, "prompt": f.Prompt, "n": 1}
		if s := f.SizeText(); s != "" {
			body["size"] = s
		}
		hosted.Merge(body, e.imageIn)
		req, err = e.post(ctx, "/images/generations", body, "application/json")
	} else {
		req, err = e.editRequest(ctx, job, f, model)
	}
	if err != nil {
		return nil, err
	}
	if err := m.Report(ctx, 10, "generating at "+e.Name()); err != nil {
		return nil, err
	}
	resp, err := e.api.Send(req)
	if err != nil {
		return nil, err
	}
	what := "image generation"
	if f.ImageURL != "" {
		what = "image edit"
	}
	if resp.Code != http.StatusOK {
		return nil, statusError(what, resp)
	}
	var ans imagesAnswer
	if err := resp.Decode(&ans); err != nil {
		return nil, err
	}
	var urls []string
	data := map[string]any{"model": model}
	for _, d := range ans.Data {
		switch {
		case d.B64JSON != "":
			// The format is not named: the stored file's type is sniffed.
			urls = append(urls, "data:;base64,"+d.B64JSON)
		case d.URL != "":
			urls = append(urls, d.URL)
		}
		if d.RevisedPrompt != "" {
			data["revised_prompt"] = d.RevisedPrompt
		}
	}
	if len(urls) == 0 {
		return nil, executor.Errorf(executor.ProviderError, "the %s answered no image", what)
	}
	var used task.Usage
	if len(ans.Usage) > 0 && string(ans.Usage) != "null" {
		var u any
		if json.Unmarshal(ans.Usage, &u) == nil {
			data["usage"] = u
		}
		// gpt-image-1 counts input_tokens (text and image) and
		// output_tokens (the image's).
		var n struct {
			InputTokens  int64 `json:"input_tokens"`
			OutputTokens int64 `json:"output_tokens"`
		}
		if json.Unmarshal(ans.Usage, &n) == nil {
			used = task.Usage{InputTokens: n.InputTokens, OutputTokens: n.OutputTokens}
		}
	}
	if err := m.Report(ctx, 90, "storing outputs"); err != nil {
		return nil, err
	}
	arts, err := hosted.Download(ctx, e.http, job, urls)
	if err != nil {
		return nil, err
	}
	if err := m.Report(ctx, 100, "done"); err != nil {
		return nil, err
	}
	return &executor.Output{Artifacts: arts, Data: data, Usage: used}, nil
}

// editRequest builds POST /images/edits (§4.1: multipart image, optional
// mask, prompt): the input image and mask are read through job.OpenInput;
// the image_input settings become form fields.
func (e *Executor) editRequest(ctx context.Context, job *executor.Job, f *llm.Fields, model string) (*http.Request, error) {
	img, err := llm.ReadImage(ctx, job, "image_url", f.ImageURL, e.inlineMax)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fields := map[string]any{"model": model, "prompt": f.Prompt, "n": 1}
	if s := f.SizeText(); s != "" {
		fields["size"] = s
	}
	hosted.Merge(fields, e.imageIn)
	for k, v := range fields {
		if err := w.WriteField(k, formValue(v)); err != nil {
			return nil, fmt.Errorf("writing the edit form: %w", err)
		}
	}
	if len(f.ReferenceImageURLs) == 0 {
		if err := filePart(w, "image", img); err != nil {
			return nil, err
		}
	} else {
		// Several input images go as an array, image[] (the form the
		// OpenAI SDKs send a list in ⚠ not in the reference): the image to
		// edit first, then the references.
		if err := filePart(w, "image[]", img); err != nil {
			return nil, err
		}
		for i, u := range f.ReferenceImageURLs {
			ref, err := llm.ReadImage(ctx, job, fmt.Sprintf("reference_image_urls[%d]", i), u, e.inlineMax)
			if err != nil {
				return nil, err
			}
			if err := filePart(w, "image[]", ref); err != nil {
				return nil, err
			}
		}
	}
	if f.MaskURL != "" {
		mask, err := llm.ReadImage(ctx, job, "mask_url", f.MaskURL, e.inlineMax)
		if err != nil {
			return nil, err
		}
		if err := filePart(w, "mask", mask); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("writing the edit form: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.base+"/images/edits", &buf)
	if err != nil {
		return nil, executor.Errorf(executor.InvalidInput, "building the request: %w", err)
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// filePart adds an image file to the form under name.
func filePart(w *multipart.Writer, name string, img llm.Image) error {
	ext := strings.TrimPrefix(img.MIME, "image/")
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename="%s.%s"`, name, strings.TrimSuffix(name, "[]"), ext))
	h.Set("Content-Type", img.MIME)
	p, err := w.CreatePart(h)
	if err != nil {
		return fmt.Errorf("writing the edit form: %w", err)
	}
	if _, err := p.Write(img.Data); err != nil {
		return fmt.Errorf("writing the edit form: %w", err)
	}
	return nil
}

// formValue writes a setting as a form field: strings as they are, other
// values as JSON.
func formValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(raw)
}
