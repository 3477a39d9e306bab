// Package wordcount is a task type defined outside the compute server's
// core: `word_count` counts the words, lines and characters of a text.
// examples/custom-type registers it next to the built-in types.
package wordcount

import (
	"context"
	"embed"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// Name is the task type name.
const Name = "word_count"

// Fields are the word_count type's columns (table word_count_tasks): the
// text, and the counts the processor writes.
type Fields struct {
	Text       string `json:"text" db:"text" minLength:"1" maxLength:"1000000" doc:"The text to count."`
	Words      *int   `json:"words,omitempty" db:"words" readOnly:"true" doc:"Words, separated by white space."`
	Lines      *int   `json:"lines,omitempty" db:"lines" readOnly:"true" doc:"Lines."`
	Characters *int   `json:"characters,omitempty" db:"characters" readOnly:"true" doc:"Characters (Unicode code points)."`
}

// Update is the PATCH body of a pending word_count task.
type Update struct {
	Text *string `json:"text,omitempty" minLength:"1" maxLength:"1000000"`
}

// Output is the result data of a word_count task.
type Output struct {
	Words      int `json:"words"`
	Lines      int `json:"lines"`
	Characters int `json:"characters"`
}

// ErrNoWords is the permanent failure of a text that is only white space.
var ErrNoWords = errors.New("the text has no words")

//go:embed migrations
var migrations embed.FS

// Type declares the word_count task type.
func Type() registry.Type[Fields, Update] {
	return registry.Type[Fields, Update]{
		Name:        Name,
		Title:       "Word count",
		Description: "Counts the words, lines and characters of a text.",
		Processor:   registry.ProcessorFunc[Fields](Process),
		Migrations:  registry.Sub(migrations, "migrations"),
		MaxAttempts: 1,
		Timeout:     time.Minute,
		Examples: []registry.Example{
			{Name: "counts", Body: map[string]any{"text": "one two\nthree"}, WantStatus: task.StatusCompleted},
			{Name: "only white space", Body: map[string]any{"text": " \n\t "}, WantStatus: task.StatusFailed, WantError: ErrNoWords.Error()},
		},
	}
}

// Process counts, saves the counts in the task's columns and returns
// them as the result.
func Process(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	f := job.Fields
	words := len(strings.Fields(f.Text))
	if words == 0 {
		return nil, task.Permanent(ErrNoWords)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := Output{Words: words, Lines: strings.Count(strings.TrimSuffix(f.Text, "\n"), "\n") + 1, Characters: utf8.RuneCountInString(f.Text)}
	f.Words, f.Lines, f.Characters = &out.Words, &out.Lines, &out.Characters
	if err := job.SaveFields(ctx); err != nil {
		return nil, err
	}
	if err := job.Progress(ctx, 100, "counted"); err != nil {
		return nil, err
	}
	return &task.Result{Artifacts: []task.Artifact{}, Data: out}, nil
}
