package registry

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/task"
)

var columnPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// baseJSONNames are the wire names of the base task; a type field may not
// reuse one, because the public representation is flat.
var baseJSONNames = func() map[string]bool {
	names := map[string]bool{"task_type": true}
	t := reflect.TypeFor[task.Task]()
	for i := range t.NumField() {
		if n := jsonName(t.Field(i)); n != "" && n != "-" {
			names[n] = true
		}
	}
	// Create-only fields of the base schema.
	for _, n := range []string{"idempotency_key", "webhook_url", "webhook_events"} {
		names[n] = true
	}
	return names
}()

// IsBaseField reports whether name is a field of the base task on the wire.
func IsBaseField(name string) bool { return baseJSONNames[name] }

func jsonName(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	name, _, _ := strings.Cut(tag, ",")
	return name
}

var timeType = reflect.TypeFor[time.Time]()

func kindOf(t reflect.Type) (Kind, bool, error) {
	nullable := false
	if t.Kind() == reflect.Pointer {
		nullable = true
		t = t.Elem()
	}
	if t == timeType {
		return KindTime, nullable, nil
	}
	switch t.Kind() {
	case reflect.String:
		return KindString, nullable, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return KindInt, nullable, nil
	case reflect.Float32, reflect.Float64:
		return KindFloat, nullable, nil
	case reflect.Bool:
		return KindBool, nullable, nil
	case reflect.Slice, reflect.Map, reflect.Struct:
		// Slices and maps are NULL-able by nature.
		return KindJSON, true, nil
	}
	return 0, false, fmt.Errorf("unsupported field type %s", t)
}

// columnsOf derives the type table's columns from the fields struct.
func columnsOf(model reflect.Type) ([]Column, error) {
	if model.Kind() != reflect.Struct {
		return nil, fmt.Errorf("must be a struct, is %s", model.Kind())
	}
	var cols []Column
	seenDB := map[string]bool{}
	seenJSON := map[string]bool{}
	for i := range model.NumField() {
		f := model.Field(i)
		if !f.IsExported() {
			continue
		}
		db := f.Tag.Get("db")
		if db == "-" {
			continue
		}
		js := jsonName(f)
		switch {
		case db == "":
			return nil, fmt.Errorf("field %s has no db tag", f.Name)
		case !columnPattern.MatchString(db):
			return nil, fmt.Errorf("field %s: db name %q must be lower-case snake_case", f.Name, db)
		case db == "id":
			return nil, fmt.Errorf("field %s: db name \"id\" is the primary key", f.Name)
		case js == "" || js == "-":
			return nil, fmt.Errorf("field %s has no json name", f.Name)
		case baseJSONNames[js]:
			return nil, fmt.Errorf("field %s: json name %q is a base task field", f.Name, js)
		case seenDB[db]:
			return nil, fmt.Errorf("field %s: duplicate db name %q", f.Name, db)
		case seenJSON[js]:
			return nil, fmt.Errorf("field %s: duplicate json name %q", f.Name, js)
		}
		seenDB[db], seenJSON[js] = true, true
		kind, nullable, err := kindOf(f.Type)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", f.Name, err)
		}
		cols = append(cols, Column{
			Name:     db,
			JSONName: js,
			Index:    f.Index,
			Kind:     kind,
			Nullable: nullable,
			ReadOnly: f.Tag.Get("readOnly") == "true",
			Type:     f.Type,
		})
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("has no fields with db tags")
	}
	return cols, nil
}

// updateFieldsOf checks that every field of the PATCH struct is a pointer
// to the type of a writable model field with the same json name.
func updateFieldsOf(upd reflect.Type, cols []Column) ([]UpdateField, error) {
	if upd.Kind() != reflect.Struct {
		return nil, fmt.Errorf("must be a struct, is %s", upd.Kind())
	}
	byJSON := map[string]Column{}
	for _, c := range cols {
		byJSON[c.JSONName] = c
	}
	var out []UpdateField
	for i := range upd.NumField() {
		f := upd.Field(i)
		if !f.IsExported() {
			continue
		}
		js := jsonName(f)
		col, ok := byJSON[js]
		switch {
		case !ok:
			return nil, fmt.Errorf("field %s: json name %q is not a field of the model", f.Name, js)
		case col.ReadOnly:
			return nil, fmt.Errorf("field %s: %q is read-only", f.Name, js)
		case f.Type.Kind() != reflect.Pointer:
			return nil, fmt.Errorf("field %s must be a pointer (nil = unchanged)", f.Name)
		}
		want := col.Type
		if want.Kind() != reflect.Pointer {
			want = reflect.PointerTo(want)
		}
		if f.Type != want {
			return nil, fmt.Errorf("field %s is %s, want %s to match the model", f.Name, f.Type, want)
		}
		out = append(out, UpdateField{Index: f.Index, Column: col})
	}
	return out, nil
}

// ApplyUpdate copies the non-nil fields of upd (a *U) onto model (a *M)
// and returns the columns it changed.
func (d *Definition) ApplyUpdate(model, upd any) []Column {
	mv := reflect.ValueOf(model).Elem()
	uv := reflect.ValueOf(upd).Elem()
	var changed []Column
	for _, uf := range d.UpdateFields {
		src := uv.FieldByIndex(uf.Index)
		if src.IsNil() {
			continue
		}
		dst := mv.FieldByIndex(uf.Column.Index)
		if uf.Column.Type.Kind() == reflect.Pointer {
			dst.Set(src)
		} else {
			dst.Set(src.Elem())
		}
		changed = append(changed, uf.Column)
	}
	return changed
}

// Field returns the addressable field of model (a *M) for column c.
func Field(model any, c Column) reflect.Value {
	return reflect.ValueOf(model).Elem().FieldByIndex(c.Index)
}

// FieldsJSON marshals model (a *M) as a JSON object.
func FieldsJSON(model any) ([]byte, error) { return json.Marshal(model) }
