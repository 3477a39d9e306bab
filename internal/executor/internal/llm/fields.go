// Package llm holds what the executors of synchronous model APIs (openai,
// gemini; reference/executors.md §4) share: the task fields they read and
// how they are validated, the in-process table that makes a synchronous
// call a job with a handle that can be cancelled (by dropping the
// connection) and is lost when its process ends, a lenient Server-Sent
// Events reader for long lines, and the reading of input images.
package llm

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
)

// The operations (executor.Job.Operation) these executors run.
const (
	// OpChat is text in, text out: Output.Data["text"].
	OpChat = "chat"
	// OpTextToImage is a prompt in, an image artifact out.
	OpTextToImage = "text_to_image"
	// OpEditImage is an input image and an instruction in, an image out.
	OpEditImage = "edit_image"
)

// Message is one turn of a conversation in a task's messages field.
type Message struct {
	// Role is system, user or assistant.
	Role string `json:"role"`
	// Content is the turn's text.
	Content string `json:"content"`
}

// Fields are the task fields the executors read (docs/executors.md,
// "Operations and the fields they read"). Other fields are ignored.
type Fields struct {
	// Prompt is the user's message (chat, appended after Messages), the
	// image prompt (text_to_image) or the edit instruction (edit_image).
	Prompt string `json:"prompt"`
	// System is the system instruction.
	System string `json:"system"`
	// Messages is an earlier conversation (chat).
	Messages []Message `json:"messages"`
	// Temperature, MaxTokens and Seed go to the model when set.
	Temperature *float64 `json:"temperature"`
	MaxTokens   int      `json:"max_tokens"`
	Seed        *int64   `json:"seed"`
	// ImageURL is the input image of edit_image (and an image shown to
	// the model in chat); ReferenceImageURL (the generation type's field)
	// stands in for it when it is empty.
	ImageURL          string `json:"image_url"`
	ReferenceImageURL string `json:"reference_image_url"`
	// ReferenceImageURLs are more input images of edit_image, after the
	// one to edit (a garment to put on the person of ImageURL).
	ReferenceImageURLs []string `json:"reference_image_urls"`
	// MaskURL is the edit mask (openai only).
	MaskURL string `json:"mask_url"`
	// Model, when set, is the model to call instead of the one the
	// executor's settings name for the task's type.
	Model string `json:"model"`
	// ResponseSchema, when set, is a JSON Schema (an object schema) the
	// chat's answer must follow: OpenAI's response_format json_schema,
	// Gemini's responseJsonSchema with responseMimeType application/json.
	ResponseSchema map[string]any `json:"response_schema"`
	// Size is the output size ("1024x1024", openai); without it Width and
	// Height make one.
	Size   string `json:"size"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	// AspectRatio ("16:9") and ImageSize ("1K", "2K", "4K") are Gemini's
	// image settings; without AspectRatio, Width and Height choose the
	// nearest ratio Gemini accepts.
	AspectRatio string `json:"aspect_ratio"`
	ImageSize   string `json:"image_size"`
}

// Decode reads and checks a job's fields for its operation: an unknown
// operation, a chat with neither prompt nor messages, an image without a
// prompt or an edit without an input image is invalid input.
func Decode(job *executor.Job) (*Fields, error) {
	var f Fields
	if len(job.Fields) > 0 {
		if err := json.Unmarshal(job.Fields, &f); err != nil {
			return nil, executor.Errorf(executor.InvalidInput, "reading the task's fields: %w", err)
		}
	}
	if f.ImageURL == "" {
		f.ImageURL = f.ReferenceImageURL
	}
	switch job.Operation {
	case OpChat:
		if strings.TrimSpace(f.Prompt) == "" && len(f.Messages) == 0 {
			return nil, executor.Errorf(executor.InvalidInput, "a chat needs a prompt or messages")
		}
		if f.ResponseSchema != nil && f.ResponseSchema["type"] != "object" {
			return nil, executor.Errorf(executor.InvalidInput, "response_schema must be an object schema (\"type\": \"object\")")
		}
		for i, m := range f.Messages {
			switch m.Role {
			case "system", "user", "assistant":
			default:
				return nil, executor.Errorf(executor.InvalidInput, "messages[%d].role %q: want system, user or assistant", i, m.Role)
			}
		}
	case OpTextToImage, OpEditImage:
		if strings.TrimSpace(f.Prompt) == "" {
			return nil, executor.Errorf(executor.InvalidInput, "%s needs a prompt", job.Operation)
		}
		if job.Operation == OpEditImage && f.ImageURL == "" {
			return nil, executor.Errorf(executor.InvalidInput, "edit_image needs image_url (the image to edit)")
		}
	default:
		return nil, executor.Errorf(executor.InvalidInput, "operation %q is not one of chat, text_to_image, edit_image", job.Operation)
	}
	if len(f.ReferenceImageURLs) > 0 && job.Operation != OpEditImage {
		return nil, executor.Errorf(executor.InvalidInput, "reference_image_urls are read by edit_image only")
	}
	if f.MaxTokens < 0 {
		return nil, executor.Errorf(executor.InvalidInput, "max_tokens %d is negative", f.MaxTokens)
	}
	if f.Width < 0 || f.Height < 0 {
		return nil, executor.Errorf(executor.InvalidInput, "size %dx%d is negative", f.Width, f.Height)
	}
	return &f, nil
}

// ModelFor returns the model to call for a job of task type typ: the
// task's own, else the one models name for the type.
func (f *Fields) ModelFor(models hosted.Models, typ string) string {
	if f.Model != "" {
		return f.Model
	}
	return models.For(typ)
}

// SizeText is the openai size: Size, else "WxH" from Width and Height
// when both are set, else "".
func (f *Fields) SizeText() string {
	if f.Size != "" {
		return f.Size
	}
	if f.Width > 0 && f.Height > 0 {
		return fmt.Sprintf("%dx%d", f.Width, f.Height)
	}
	return ""
}

// Image is an input image read for a call.
type Image struct {
	// Data is the file; MIME its content type (sniffed).
	Data []byte
	MIME string
}

// ReadImage reads the input image at url through job.OpenInput (our
// artifacts or a guarded fetch). A URL that cannot be read, or a file
// that is not an image, is invalid input; one over limit bytes (0:
// hosted.DefaultInlineMax) too, since it is sent inline.
func ReadImage(ctx context.Context, job *executor.Job, field, url string, limit int64) (Image, error) {
	if job.OpenInput == nil {
		return Image{}, executor.Errorf(executor.InvalidInput, "input %s: this task type cannot read input URLs", field)
	}
	data, err := job.OpenInput(ctx, url)
	if err != nil {
		return Image{}, executor.Classify(executor.InvalidInput, fmt.Errorf("input %s: %w", field, err))
	}
	if limit <= 0 {
		limit = hosted.DefaultInlineMax
	}
	if int64(len(data)) > limit {
		return Image{}, executor.Errorf(executor.InvalidInput, "input %s is %d bytes, over the %d-byte limit for inline images (inline_input_max_bytes)", field, len(data), limit)
	}
	mime := http.DetectContentType(data)
	if !strings.HasPrefix(mime, "image/") {
		return Image{}, executor.Errorf(executor.InvalidInput, "input %s is %s, not an image", field, mime)
	}
	return Image{Data: data, MIME: mime}, nil
}
