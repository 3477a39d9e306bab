package storetest

import (
	"context"
	"embed"
	"math"
	"time"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
)

// sinkName is the name of the test-only task type whose fields cover every
// column kind the registry supports.
const sinkName = "kitchensink"

// sinkNested is stored as a JSON column (by value and by pointer).
type sinkNested struct {
	Label  string            `json:"label"`
	Scores []float64         `json:"scores"`
	Inner  map[string]string `json:"inner"`
}

// sinkFields are the kitchensink type's columns: one of every kind, each
// nullable kind both as a pointer and as a value, and a column named with a
// reserved SQL word ("order") to check identifiers are quoted.
type sinkFields struct {
	Name      string         `json:"name" db:"name"`
	Counter   int            `json:"counter" db:"counter"`
	Big       int64          `json:"big" db:"big"`
	Ratio     float64        `json:"ratio" db:"ratio"`
	Enabled   bool           `json:"enabled" db:"enabled"`
	At        time.Time      `json:"happened_at" db:"happened_at"`
	Note      *string        `json:"note" db:"note"`
	MaxItems  *int           `json:"max_items" db:"max_items"`
	Deadline  *time.Time     `json:"deadline" db:"deadline"`
	Weight    *float64       `json:"weight" db:"weight"`
	Flag      *bool          `json:"flag" db:"flag"`
	Tags      []string       `json:"tags" db:"tags"`
	Meta      map[string]any `json:"meta" db:"meta"`
	Nested    sinkNested     `json:"nested" db:"nested"`
	NestedPtr *sinkNested    `json:"nested_ptr" db:"nested_ptr"`
	Position  int            `json:"position" db:"order"`
	Output    string         `json:"output" db:"output" readOnly:"true"`
}

// sinkUpdate is the PATCH body of a kitchensink task.
type sinkUpdate struct {
	Name     *string         `json:"name"`
	Counter  *int            `json:"counter"`
	At       *time.Time      `json:"happened_at"`
	Note     *string         `json:"note"`
	Deadline *time.Time      `json:"deadline"`
	Tags     *[]string       `json:"tags"`
	Meta     *map[string]any `json:"meta"`
	Nested   *sinkNested     `json:"nested"`
	Position *int            `json:"position"`
}

//go:embed migrations
var sinkMigrations embed.FS

func sinkType() registry.Type[sinkFields, sinkUpdate] {
	return registry.Type[sinkFields, sinkUpdate]{
		Name:        sinkName,
		Title:       "Kitchen sink",
		Description: "A test-only type with a column of every kind.",
		Processor: registry.ProcessorFunc[sinkFields](func(context.Context, *registry.Job[sinkFields]) (*task.Result, error) {
			return &task.Result{}, nil
		}),
		Migrations: registry.Sub(sinkMigrations, "migrations"),
	}
}

// newRegistry returns the registry every store under test is opened with:
// the kitchensink type and echo.
func newRegistry() *registry.Registry {
	reg := registry.New()
	reg.MustRegister(sinkType())
	reg.MustRegister(echo.Type())
	return reg
}

func ptr[T any](v T) *T { return &v }

// zone is a non-UTC zone ahead of UTC, so a time written in it sorts wrongly
// as text unless the store normalises it.
var zone = time.FixedZone("IST", 5*3600+1800)

// fullFields has every field set to a non-zero value, times in a non-UTC
// zone at microsecond precision.
func fullFields() *sinkFields {
	at := time.Date(2025, 7, 14, 9, 30, 15, 123456000, zone)
	return &sinkFields{
		Name:     `kitchen "sink" ✓ 'quoted'`,
		Counter:  -42,
		Big:      math.MaxInt64,
		Ratio:    math.Pi,
		Enabled:  true,
		At:       at,
		Note:     ptr("a note"),
		MaxItems: ptr(7),
		Deadline: ptr(at.Add(36*time.Hour + 1*time.Microsecond)),
		Weight:   ptr(-0.1),
		Flag:     ptr(true),
		Tags:     []string{"b", "a", "b"},
		Meta: map[string]any{
			"s": "x", "n": 1.5, "b": true, "null": nil,
			"list": []any{"a", 2.0, false},
			"obj":  map[string]any{"k": "v", "deep": map[string]any{"z": -3.25}},
		},
		Nested:    sinkNested{Label: "n", Scores: []float64{0.5, 1e10}, Inner: map[string]string{"a": "b"}},
		NestedPtr: &sinkNested{Label: "p", Scores: []float64{}, Inner: map[string]string{}},
		Position:  3,
		Output:    "out",
	}
}

// zeroPtrFields has every pointer set to a zero value and every JSON field
// empty but not nil: none of them may come back nil.
func zeroPtrFields() *sinkFields {
	return &sinkFields{
		Name:      "zero",
		At:        time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Note:      ptr(""),
		MaxItems:  ptr(0),
		Deadline:  ptr(time.Time{}),
		Weight:    ptr(0.0),
		Flag:      ptr(false),
		Tags:      []string{},
		Meta:      map[string]any{},
		Nested:    sinkNested{},
		NestedPtr: &sinkNested{},
	}
}

// utcFields returns a copy of f with its times in UTC, as the store must
// return them.
func utcFields(f *sinkFields) *sinkFields {
	c := *f
	c.At = c.At.UTC()
	if c.Deadline != nil {
		c.Deadline = ptr(c.Deadline.UTC())
	}
	return &c
}
