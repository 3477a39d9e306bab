package gemini

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
	"github.com/computeserver/compute/internal/executor/internal/llm"
)

// aspectRatios are the ratios imageConfig.aspectRatio accepts (§4.2).
var aspectRatios = []string{"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"}

// AspectRatio returns the accepted ratio nearest to width:height
// (compared on a log scale, so 2:1 is as far from 1:1 as 1:2).
func AspectRatio(width, height int) string {
	if width <= 0 || height <= 0 {
		return ""
	}
	want := math.Log(float64(width) / float64(height))
	best, bestD := "", math.Inf(1)
	for _, r := range aspectRatios {
		a, b, _ := strings.Cut(r, ":")
		w, _ := strconv.ParseFloat(a, 64) // the list above is well formed
		h, _ := strconv.ParseFloat(b, 64)
		if d := math.Abs(math.Log(w/h) - want); d < bestD {
			best, bestD = r, d
		}
	}
	return best
}

// request builds the generateContent body (§4.2 Request): the task's
// messages as contents (assistant turns as role model), its prompt and
// input image as the last user turn (inlineData), system as
// systemInstruction, temperature, max_tokens and seed in
// generationConfig, and for an image operation responseModalities TEXT
// and IMAGE with imageConfig; then the settings' generation_config and
// safety_settings.
func (e *Executor) request(ctx context.Context, job *executor.Job, f *llm.Fields) (map[string]any, error) {
	var contents []map[string]any
	system := f.System
	for _, m := range f.Messages {
		switch m.Role {
		case "system":
			system = strings.TrimSpace(system + "\n" + m.Content)
		case "assistant":
			contents = append(contents, turn("model", textPart(m.Content)))
		default:
			contents = append(contents, turn("user", textPart(m.Content)))
		}
	}
	var parts []map[string]any
	if f.Prompt != "" {
		parts = append(parts, textPart(f.Prompt))
	}
	if f.ImageURL != "" {
		img, err := llm.ReadImage(ctx, job, "image_url", f.ImageURL, e.inlineMax)
		if err != nil {
			return nil, err
		}
		parts = append(parts, inlinePart(img))
	}
	for i, u := range f.ReferenceImageURLs {
		// An edit's reference images follow the image to edit (§4.2: one
		// user turn of text and inlineData parts).
		img, err := llm.ReadImage(ctx, job, fmt.Sprintf("reference_image_urls[%d]", i), u, e.inlineMax)
		if err != nil {
			return nil, err
		}
		parts = append(parts, inlinePart(img))
	}
	if len(parts) > 0 {
		contents = append(contents, turn("user", parts...))
	}
	body := map[string]any{"contents": contents}
	if system != "" {
		body["systemInstruction"] = map[string]any{"parts": []any{textPart(system)}}
	}
	gen := map[string]any{}
	if f.Temperature != nil {
		gen["temperature"] = *f.Temperature
	}
	if f.MaxTokens > 0 {
		gen["maxOutputTokens"] = f.MaxTokens
	}
	if f.Seed != nil {
		gen["seed"] = *f.Seed % math.MaxInt32 // an int32 field
	}
	if f.ResponseSchema != nil {
		// Structured output: a JSON answer following the schema ⚠ (the
		// Gemini API's responseJsonSchema, not in the reference).
		gen["responseMimeType"] = "application/json"
		gen["responseJsonSchema"] = f.ResponseSchema
	}
	if job.Operation != llm.OpChat {
		gen["responseModalities"] = []string{"TEXT", "IMAGE"}
		ic := map[string]any{}
		ratio := f.AspectRatio
		if ratio == "" && f.Size == "" {
			ratio = AspectRatio(f.Width, f.Height)
		}
		if ratio != "" {
			ic["aspectRatio"] = ratio
		}
		if f.ImageSize != "" {
			ic["imageSize"] = f.ImageSize
		}
		if len(ic) > 0 {
			gen["imageConfig"] = ic
		}
	}
	hosted.Merge(gen, e.genConfig)
	if len(gen) > 0 {
		body["generationConfig"] = gen
	}
	if len(e.safety) > 0 {
		body["safetySettings"] = e.safety
	}
	return body, nil
}

// inlinePart is an image as an inlineData part.
func inlinePart(img llm.Image) map[string]any {
	return map[string]any{"inlineData": map[string]any{"mimeType": img.MIME, "data": base64.StdEncoding.EncodeToString(img.Data)}}
}

func turn(role string, parts ...map[string]any) map[string]any {
	return map[string]any{"role": role, "parts": parts}
}

func textPart(s string) map[string]any { return map[string]any{"text": s} }

// retryDelay reads the retryDelay of a google.rpc.RetryInfo among an
// error's details ("30s") ⚠ (§4.2: error details, not re-read); 0 when
// there is none.
func retryDelay(body []byte) time.Duration {
	var st status
	if json.Unmarshal(body, &st) != nil || st.Error == nil {
		return 0
	}
	for _, d := range st.Error.Details {
		if strings.HasSuffix(d.Type, "google.rpc.RetryInfo") && d.RetryDelay != "" {
			if v, err := time.ParseDuration(d.RetryDelay); err == nil && v > 0 {
				return v
			}
		}
	}
	return 0
}
