package scaffold

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store/schema"
)

// The field types a spec can name.
const (
	TypeString  = "string"
	TypeInt     = "int"
	TypeFloat   = "float"
	TypeBool    = "bool"
	TypeTime    = "time"
	TypeStrings = "[]string"
	TypeJSON    = "json"
)

var fieldTypes = []string{TypeString, TypeInt, TypeFloat, TypeBool, TypeTime, TypeStrings, TypeJSON}

// Field is one field of a new type, parsed from a spec such as
// "prompt:string:min=1,max=2000" or "steps:int:min=1,max=150,default=28".
type Field struct {
	// Name is the snake_case name on the wire and in the table.
	Name string
	// Type is one of string, int, float, bool, time, []string, json.
	Type string
	// Min and Max bound the value (int, float), the length (string) or
	// the number of items ([]string); "" when unset.
	Min, Max string
	// Default is the value an absent field takes ("" when unset).
	Default string
	// Enum lists the allowed values of a string field.
	Enum []string
	// Optional fields may be absent: a pointer (NULL in the table).
	Optional bool
	// Output fields are written by the processor, not by clients
	// (readOnly); they are optional.
	Output bool
}

var fieldNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// ParseField parses a field spec: name:type[:constraints], where the
// constraints are comma-separated: min=N, max=N, default=V, enum=a|b|c,
// optional, output.
func ParseField(spec string) (Field, error) {
	parts := strings.SplitN(spec, ":", 3)
	if len(parts) < 2 {
		return Field{}, fmt.Errorf("field %q: want name:type[:constraints], e.g. prompt:string:min=1,max=2000", spec)
	}
	f := Field{Name: parts[0], Type: parts[1]}
	if len(parts) == 3 && parts[2] != "" {
		for _, c := range strings.Split(parts[2], ",") {
			key, val, hasVal := strings.Cut(strings.TrimSpace(c), "=")
			switch {
			case key == "optional" && !hasVal:
				f.Optional = true
			case key == "output" && !hasVal:
				f.Output = true
			case key == "min" && hasVal:
				f.Min = val
			case key == "max" && hasVal:
				f.Max = val
			case key == "default" && hasVal:
				f.Default = val
			case key == "enum" && hasVal:
				f.Enum = strings.Split(val, "|")
			default:
				return Field{}, fmt.Errorf("field %q: unknown constraint %q (known: min=N, max=N, default=V, enum=a|b|c, optional, output)", f.Name, c)
			}
		}
	}
	return f, f.validate()
}

func (f Field) fail(format string, a ...any) error {
	return fmt.Errorf("field %q: %s", f.Name, fmt.Sprintf(format, a...))
}

// validate checks the field on its own: name, type, and constraints that
// fit the type and each other.
func (f Field) validate() error {
	switch {
	case !fieldNamePattern.MatchString(f.Name):
		return f.fail("the name must be lower-case snake_case (a letter, then letters, digits or underscores)")
	case f.Name == "id":
		return f.fail("id is the primary key of every type table")
	case registry.IsBaseField(f.Name):
		return f.fail("%s is a field of every task (see GET /api/v1/task-types); choose another name", f.Name)
	case !slices.Contains(fieldTypes, f.Type):
		return f.fail("unknown type %q (known: %s)", f.Type, strings.Join(fieldTypes, ", "))
	case f.Output && (f.Min != "" || f.Max != "" || f.Default != "" || len(f.Enum) > 0):
		return f.fail("an output field is written by the processor and takes no constraints")
	case f.Optional && f.Default != "":
		return f.fail("an optional field is null when absent, so it cannot have a default")
	case len(f.Enum) > 0 && f.Type != TypeString:
		return f.fail("enum applies to string fields")
	case slices.Contains(f.Enum, ""):
		return f.fail("enum values must not be empty")
	}
	var lo, hi *float64
	for _, b := range []struct {
		name, raw string
		dst       **float64
	}{{"min", f.Min, &lo}, {"max", f.Max, &hi}} {
		if b.raw == "" {
			continue
		}
		v, err := f.bound(b.name, b.raw)
		if err != nil {
			return err
		}
		*b.dst = &v
	}
	if lo != nil && hi != nil && *lo > *hi {
		return f.fail("min %s is greater than max %s", f.Min, f.Max)
	}
	if f.Default != "" {
		return f.checkDefault(lo, hi)
	}
	return nil
}

// bound parses a min or max: an integer for int, string and []string
// (a length or count, not negative), a number for float.
func (f Field) bound(name, raw string) (float64, error) {
	switch f.Type {
	case TypeInt, TypeString, TypeStrings:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return 0, f.fail("%s=%s is not an integer", name, raw)
		}
		if n < 0 && f.Type != TypeInt {
			return 0, f.fail("%s=%s: a length cannot be negative", name, raw)
		}
		return float64(n), nil
	case TypeFloat:
		v, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return 0, f.fail("%s=%s is not a number", name, raw)
		}
		return v, nil
	}
	return 0, f.fail("%s does not apply to a %s field", name, f.Type)
}

func (f Field) checkDefault(lo, hi *float64) error {
	var v float64
	switch f.Type {
	case TypeString:
		if len(f.Enum) > 0 && !slices.Contains(f.Enum, f.Default) {
			return f.fail("default %q is not one of the enum values %s", f.Default, strings.Join(f.Enum, ", "))
		}
		v = float64(utf8.RuneCountInString(f.Default))
	case TypeInt:
		n, err := strconv.ParseInt(f.Default, 10, 64)
		if err != nil {
			return f.fail("default %q is not an integer", f.Default)
		}
		v = float64(n)
	case TypeFloat:
		var err error
		if v, err = strconv.ParseFloat(f.Default, 64); err != nil {
			return f.fail("default %q is not a number", f.Default)
		}
	case TypeBool:
		if _, err := strconv.ParseBool(f.Default); err != nil {
			return f.fail("default %q is not true or false", f.Default)
		}
		return nil
	default:
		return f.fail("a %s field cannot have a default", f.Type)
	}
	if (lo != nil && v < *lo) || (hi != nil && v > *hi) {
		return f.fail("default %s is outside min %s and max %s", f.Default, orDash(f.Min), orDash(f.Max))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// nullable reports whether the field is stored as a nullable column:
// optional and output fields, lists and objects.
func (f Field) nullable() bool {
	return f.Optional || f.Output || f.Type == TypeStrings || f.Type == TypeJSON
}

// pointer reports whether the Go field is a pointer.
func (f Field) pointer() bool {
	return (f.Optional || f.Output) && f.Type != TypeStrings && f.Type != TypeJSON
}

func (f Field) kind() registry.Kind {
	return map[string]registry.Kind{
		TypeString: registry.KindString, TypeInt: registry.KindInt, TypeFloat: registry.KindFloat, TypeBool: registry.KindBool,
		TypeTime: registry.KindTime, TypeStrings: registry.KindJSON, TypeJSON: registry.KindJSON,
	}[f.Type]
}

// spec is the field's column for the migration.
func (f Field) spec() schema.ColumnSpec {
	return schema.ColumnSpec{Name: f.Name, Kind: f.kind(), Nullable: f.nullable(), Default: f.Default}
}

// GoName is the exported Go name: image_url → ImageURL.
func (f Field) GoName() string { return goName(f.Name) }

var initialisms = map[string]string{
	"id": "ID", "url": "URL", "uri": "URI", "http": "HTTP", "https": "HTTPS", "api": "API", "json": "JSON",
	"html": "HTML", "ip": "IP", "sql": "SQL", "uuid": "UUID", "xml": "XML", "ttl": "TTL", "cpu": "CPU",
	"gpu": "GPU", "ui": "UI", "ms": "MS", "lora": "LoRA",
}

func goName(snake string) string {
	var b strings.Builder
	for _, w := range strings.Split(snake, "_") {
		if w == "" {
			continue
		}
		if up, ok := initialisms[w]; ok {
			b.WriteString(up)
			continue
		}
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return b.String()
}

func (f Field) baseType() string {
	return map[string]string{
		TypeString: "string", TypeInt: "int", TypeFloat: "float64", TypeBool: "bool",
		TypeTime: "time.Time", TypeStrings: "[]string", TypeJSON: "map[string]any",
	}[f.Type]
}

// GoType is the field's type in Fields.
func (f Field) GoType() string {
	if f.pointer() {
		return "*" + f.baseType()
	}
	return f.baseType()
}

// UpdateType is the field's type in Update: a pointer (nil: unchanged).
func (f Field) UpdateType() string { return "*" + f.baseType() }

// schemaTags are the JSON Schema tags of the field's constraints.
func (f Field) schemaTags() []string {
	var tags []string
	lo, hi := "minimum", "maximum"
	switch f.Type {
	case TypeString:
		lo, hi = "minLength", "maxLength"
	case TypeStrings:
		lo, hi = "minItems", "maxItems"
	}
	if f.Min != "" {
		tags = append(tags, fmt.Sprintf("%s:%q", lo, f.Min))
	}
	if f.Max != "" {
		tags = append(tags, fmt.Sprintf("%s:%q", hi, f.Max))
	}
	if len(f.Enum) > 0 {
		tags = append(tags, fmt.Sprintf("enum:%q", strings.Join(f.Enum, ",")))
	}
	return tags
}

// ModelTags are the struct tags of the field in Fields.
func (f Field) ModelTags() string {
	js := f.Name
	if f.Optional || f.Output {
		js += ",omitempty"
	}
	tags := []string{fmt.Sprintf("json:%q", js)}
	if f.Default != "" {
		tags = append(tags, `required:"false"`)
	}
	tags = append(tags, fmt.Sprintf("db:%q", f.Name))
	tags = append(tags, f.schemaTags()...)
	if f.Default != "" {
		tags = append(tags, fmt.Sprintf("default:%q", f.Default))
	}
	if f.Output {
		tags = append(tags, `readOnly:"true"`)
	}
	tags = append(tags, fmt.Sprintf("doc:%q", f.doc()))
	return strings.Join(tags, " ")
}

// UpdateTags are the struct tags of the field in Update.
func (f Field) UpdateTags() string {
	return strings.Join(append([]string{fmt.Sprintf("json:%q", f.Name+",omitempty")}, f.schemaTags()...), " ")
}

// doc is a placeholder description for the API documentation.
func (f Field) doc() string {
	words := strings.ReplaceAll(f.Name, "_", " ")
	s := strings.ToUpper(words[:1]) + words[1:] + "."
	if f.Output {
		s += " Written by the processor."
	}
	return s
}

// sample returns a value of the field that satisfies its constraints, as
// a JSON value (for example bodies) and as a Go expression of its Fields
// type (for tests).
func (f Field) sample() (jsonLit, goLit string) {
	lo, _ := strconv.ParseFloat(f.Min, 64)
	hi, err := strconv.ParseFloat(f.Max, 64)
	if err != nil {
		hi = 1e18
	}
	clamp := func(v float64) float64 {
		if f.Min != "" {
			v = max(v, lo)
		}
		return min(v, hi)
	}
	switch f.Type {
	case TypeString:
		s := "example " + strings.ReplaceAll(f.Name, "_", " ")
		switch {
		case f.Default != "":
			s = f.Default
		case len(f.Enum) > 0:
			s = f.Enum[0]
		default:
			for len(s) < int(lo) {
				s += "x"
			}
			s = s[:int(min(float64(len(s)), hi))]
		}
		jsonLit, goLit = strconv.Quote(s), strconv.Quote(s)
	case TypeInt:
		v := clamp(3)
		if f.Default != "" {
			v, _ = strconv.ParseFloat(f.Default, 64)
		}
		jsonLit = strconv.FormatInt(int64(v), 10)
		goLit = jsonLit
	case TypeFloat:
		v := clamp(0.5)
		if f.Default != "" {
			v, _ = strconv.ParseFloat(f.Default, 64)
		}
		jsonLit = strconv.FormatFloat(v, 'g', -1, 64)
		goLit = jsonLit
	case TypeBool:
		jsonLit = "true"
		if f.Default != "" {
			jsonLit = f.Default
		}
		goLit = jsonLit
	case TypeTime:
		jsonLit, goLit = `"2026-01-02T03:04:05Z"`, "time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)"
	case TypeStrings:
		n := int(clamp(2))
		items := make([]string, n)
		for i := range items {
			items[i] = strconv.Quote(fmt.Sprintf("item %d", i+1))
		}
		jsonLit, goLit = "[]any{"+strings.Join(items, ", ")+"}", "[]string{"+strings.Join(items, ", ")+"}"
	case TypeJSON:
		jsonLit = `map[string]any{"key": "value"}`
		goLit = jsonLit
	}
	if f.pointer() {
		goLit = "ptr(" + goLit + ")"
		if f.Type == TypeInt {
			goLit = "ptr(int(" + jsonLit + "))"
		} else if f.Type == TypeFloat {
			goLit = "ptr(float64(" + jsonLit + "))"
		}
	}
	return jsonLit, goLit
}
