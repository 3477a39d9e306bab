// Package llminteraction is the original's `llm_interaction` task type: a
// conversation (messages, or a prompt with an optional system instruction
// and image) sent to a language model on an openai (any OpenAI-compatible
// server) or gemini executor, with the model, temperature and token budget
// chosen per task, and optionally a JSON Schema the answer must follow.
// The answer's text, and its parsed JSON when a schema was given, are the
// task's outputs; a streamed answer's chunks drive the task's progress.
//
// The mock executor answers chats too (deterministic text, or an instance
// of the schema), but only for tasks that name it: a server with no openai
// or gemini executor refuses llm_interaction tasks with a 422 saying what
// to configure.
package llminteraction

import (
	"embed"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/registry"
)

// Name is the task type name on the wire. It is stable: never rename it.
const Name = "llm_interaction"

// Executor types the type runs on (docs/task-types.md#llm_interaction).
const (
	ProviderOpenAI = "openai"
	ProviderGemini = "gemini"
	// ProviderMock answers only tasks that name it (tests, development).
	ProviderMock = "mock"
)

// Operation is the work an llm_interaction task asks its executor for.
const Operation = "chat"

// Limits of the fields, shared by the schema tags and Validate.
const (
	MaxTextLength   = 200_000
	MaxMessages     = 500
	MaxURLLength    = 2048
	MaxModelLength  = 256
	MaxTemperature  = 2
	MaxTokens       = 1_000_000
	MaxSchemaBytes  = 64 << 10
	MaxSeed         = 1<<53 - 1
	maxConversation = 2 << 20 // bytes of text over all turns
)

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role" enum:"system,user,assistant" doc:"Who speaks: system (instructions), user or assistant."`
	Content string `json:"content" maxLength:"200000" doc:"The turn's text."`
}

// Fields are the llm_interaction type's own columns (table
// llm_interaction_tasks). Pointer fields are optional (NULL when absent);
// readOnly fields are outputs the processor writes.
type Fields struct {
	Messages       []Message      `json:"messages,omitempty" db:"messages" maxItems:"500" doc:"The conversation so far, oldest first. With prompt, the prompt is the user's next turn."`
	Prompt         *string        `json:"prompt,omitempty" db:"prompt" maxLength:"200000" doc:"The user's message (after messages). A task needs a prompt or a user turn in messages."`
	System         *string        `json:"system,omitempty" db:"system" maxLength:"200000" doc:"System instruction."`
	ImageURL       *string        `json:"image_url,omitempty" db:"image_url" maxLength:"2048" doc:"An image shown to the model with the prompt: an http(s) URL or an artifact path (/api/v1/artifacts/...)."`
	Model          *string        `json:"model,omitempty" db:"model" maxLength:"256" doc:"Model to call, instead of the one the executor's settings name for this type."`
	Temperature    *float64       `json:"temperature,omitempty" db:"temperature" minimum:"0" maximum:"2" doc:"Sampling temperature; the model's default when absent."`
	MaxTokens      *int           `json:"max_tokens,omitempty" db:"max_tokens" minimum:"1" maximum:"1000000" doc:"Longest answer in tokens; an answer cut there is kept, marked truncated."`
	Seed           *int64         `json:"seed,omitempty" db:"seed" minimum:"0" maximum:"9007199254740991" doc:"Sampling seed, for models that take one."`
	ResponseSchema map[string]any `json:"response_schema,omitempty" db:"response_schema" doc:"JSON Schema of an object the answer must be (structured output). The answer is parsed into response_json and checked against it; one that does not parse or validate fails the attempt with category invalid_output."`

	ResponseText *string        `json:"response_text,omitempty" db:"response_text" readOnly:"true" doc:"The model's answer."`
	ResponseJSON map[string]any `json:"response_json,omitempty" db:"response_json" readOnly:"true" doc:"The answer parsed as JSON, when response_schema was given."`
	FinishReason *string        `json:"finish_reason,omitempty" db:"finish_reason" readOnly:"true" doc:"Why the answer ended, as the provider says (stop, length, STOP, MAX_TOKENS…)."`
}

// Update is the PATCH body of a pending llm_interaction task.
type Update struct {
	Messages       *[]Message      `json:"messages,omitempty" maxItems:"500"`
	Prompt         *string         `json:"prompt,omitempty" maxLength:"200000"`
	System         *string         `json:"system,omitempty" maxLength:"200000"`
	ImageURL       *string         `json:"image_url,omitempty" maxLength:"2048"`
	Model          *string         `json:"model,omitempty" maxLength:"256"`
	Temperature    *float64        `json:"temperature,omitempty" minimum:"0" maximum:"2"`
	MaxTokens      *int            `json:"max_tokens,omitempty" minimum:"1" maximum:"1000000"`
	Seed           *int64          `json:"seed,omitempty" minimum:"0" maximum:"9007199254740991"`
	ResponseSchema *map[string]any `json:"response_schema,omitempty"`
}

// Validate implements registry.Validator: a user turn to answer, known
// roles, bounded text, an input URL of a form the fetcher reads, and a
// response schema this package can apply (an object schema whose
// patterns compile and whose $refs resolve).
func (f *Fields) Validate() error {
	fail := func(field, format string, a ...any) error {
		return &registry.FieldError{Field: field, Message: fmt.Sprintf(format, a...)}
	}
	if len(f.Messages) > MaxMessages {
		return fail("messages", "must have at most %d turns, has %d", MaxMessages, len(f.Messages))
	}
	total, user := 0, false
	for i, m := range f.Messages {
		switch m.Role {
		case "user":
			user = true
		case "system", "assistant":
		default:
			return fail(fmt.Sprintf("messages[%d].role", i), "must be system, user or assistant, is %q", m.Role)
		}
		total += len(m.Content)
	}
	for _, t := range []struct {
		name string
		v    *string
	}{{"prompt", f.Prompt}, {"system", f.System}} {
		if t.v == nil {
			continue
		}
		if n := utf8.RuneCountInString(*t.v); n > MaxTextLength {
			return fail(t.name, "must be at most %d characters, is %d", MaxTextLength, n)
		}
		total += len(*t.v)
	}
	if total > maxConversation {
		return fail("messages", "the conversation is %d bytes, over the %d-byte limit", total, maxConversation)
	}
	if (f.Prompt == nil || *f.Prompt == "") && !user {
		return fail("prompt", "is required when messages has no user turn")
	}
	if f.ImageURL != nil {
		if len(*f.ImageURL) > MaxURLLength {
			return fail("image_url", "must be at most %d characters", MaxURLLength)
		}
		if err := artifact.CheckInputURL(*f.ImageURL); err != nil {
			return fail("image_url", "%v", err)
		}
	}
	if f.Model != nil && (*f.Model == "" || len(*f.Model) > MaxModelLength) {
		return fail("model", "must be 1 to %d characters", MaxModelLength)
	}
	if f.Temperature != nil && (*f.Temperature < 0 || *f.Temperature > MaxTemperature) {
		return fail("temperature", "must be between 0 and %d, is %g", MaxTemperature, *f.Temperature)
	}
	if f.MaxTokens != nil && (*f.MaxTokens < 1 || *f.MaxTokens > MaxTokens) {
		return fail("max_tokens", "must be between 1 and %d, is %d", MaxTokens, *f.MaxTokens)
	}
	if f.Seed != nil && (*f.Seed < 0 || *f.Seed > MaxSeed) {
		return fail("seed", "must be between 0 and %d", int64(MaxSeed))
	}
	if f.ResponseSchema != nil {
		if _, err := checkSchema(f.ResponseSchema); err != nil {
			return fail("response_schema", "%v", err)
		}
	}
	return nil
}

//go:embed migrations
var migrations embed.FS

// Type declares the llm_interaction task type; fetcher reads an input
// image on behalf of the task's tenant (nil: public URLs only), set are
// the configured executors (nil: mock and local).
func Type(fetcher *artifact.Fetcher, set *executor.Set) registry.Type[Fields, Update] {
	if fetcher == nil {
		fetcher = &artifact.Fetcher{}
	}
	if set == nil {
		set = executors.Default()
	}
	providers := []string{ProviderOpenAI, ProviderGemini, ProviderMock}
	return registry.Type[Fields, Update]{
		Name:            Name,
		Title:           "LLM interaction",
		Description:     "Sends a conversation to a language model (OpenAI-compatible or Gemini) and returns its answer, as text or as JSON following a schema.",
		Processor:       &Processor{fetcher: fetcher, executors: set},
		Scheduler:       &Scheduler{executors: set, providers: providers},
		Migrations:      registry.Sub(migrations, "migrations"),
		DefaultProvider: ProviderOpenAI,
		Providers:       providers,
		Timeout:         10 * time.Minute,
		Examples:        examples(),
	}
}
