package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// migrations is a valid migrations folder for both dialects.
var migrations = fstest.MapFS{
	"sqlite/1_x.sql":   {Data: []byte("-- +goose Up\nSELECT 1;\n")},
	"postgres/1_x.sql": {Data: []byte("-- +goose Up\nSELECT 1;\n")},
}

// nested is stored as a JSON column.
type nested struct {
	A int `json:"a"`
}

// widgetFields covers every column kind, a pointer of each nullable kind,
// a read-only output, a skipped field and an unexported one.
type widgetFields struct {
	Label    string         `json:"label" db:"label"`
	Count    int            `json:"count" db:"count"`
	Big      int64          `json:"big,omitempty" db:"big"`
	Ratio    float64        `json:"ratio" db:"ratio"`
	On       bool           `json:"on" db:"on_flag"`
	At       time.Time      `json:"at" db:"at"`
	Note     *string        `json:"note" db:"note"`
	Limit    *int           `json:"limit" db:"limit_n"`
	Deadline *time.Time     `json:"deadline" db:"deadline"`
	Tags     []string       `json:"tags" db:"tags"`
	Meta     map[string]int `json:"meta" db:"meta"`
	Nested   *nested        `json:"nested" db:"nested"`
	Output   string         `json:"output" db:"output" readOnly:"true"`
	Skipped  string         `json:"skipped" db:"-"`
	_        int            `db:"blank"` // unexported: ignored despite its db tag
}

// ApplyDefaults implements registry.Defaulter.
func (w *widgetFields) ApplyDefaults() {
	if w.Count == 0 {
		w.Count = 1
	}
}

// Validate implements registry.Validator.
func (w *widgetFields) Validate() error {
	if w.Label == "" {
		return &registry.FieldError{Field: "label", Message: "must not be empty"}
	}
	return nil
}

// widgetUpdate is the PATCH body of a widget.
type widgetUpdate struct {
	Label *string   `json:"label"`
	Count *int      `json:"count"`
	Note  *string   `json:"note"`
	Tags  *[]string `json:"tags"`
}

type plainFields struct {
	Text string `json:"text" db:"text"`
}

func widgetProcessor() registry.ProcessorOf[widgetFields] {
	return registry.ProcessorFunc[widgetFields](func(_ context.Context, job *registry.Job[widgetFields]) (*task.Result, error) {
		return &task.Result{Data: job.Fields.Label}, nil
	})
}

func plainProcessor() registry.ProcessorOf[plainFields] {
	return registry.ProcessorFunc[plainFields](func(context.Context, *registry.Job[plainFields]) (*task.Result, error) {
		return &task.Result{}, nil
	})
}

func widgetType(name string) registry.Type[widgetFields, widgetUpdate] {
	return registry.Type[widgetFields, widgetUpdate]{
		Name:       name,
		Title:      "Widget",
		Processor:  widgetProcessor(),
		Migrations: migrations,
	}
}

func plainType(name string) registry.Type[plainFields, struct{}] {
	return registry.Type[plainFields, struct{}]{Name: name, Processor: plainProcessor(), Migrations: migrations}
}

// typeOf declares a type with fields M and update U that is valid apart
// from what M and U get wrong.
func typeOf[M, U any](name string) registry.Type[M, U] {
	return registry.Type[M, U]{
		Name:       name,
		Processor:  registry.ProcessorFunc[M](func(context.Context, *registry.Job[M]) (*task.Result, error) { return nil, nil }),
		Migrations: migrations,
	}
}

func TestRegisterValidType(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	if err := reg.Register(widgetType("widget")); err != nil {
		t.Fatalf("Register: %v", err)
	}
	def, ok := reg.Lookup("widget")
	if !ok {
		t.Fatal(`Lookup("widget") found nothing after Register`)
	}
	if _, ok := reg.Lookup("gadget"); ok {
		t.Error(`Lookup("gadget") found a type that was never registered`)
	}
	if reg.Len() != 1 {
		t.Errorf("Len() = %d, want 1", reg.Len())
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{name: "Name", got: def.Name, want: "widget"},
		{name: "Title", got: def.Title, want: "Widget"},
		{name: "Table", got: def.Table, want: "widget_tasks"},
		{name: "Model", got: def.Model, want: reflect.TypeFor[widgetFields]()},
		{name: "Update", got: def.Update, want: reflect.TypeFor[widgetUpdate]()},
		{name: "DefaultProvider", got: def.DefaultProvider, want: "local"},
		{name: "Providers", got: def.Providers, want: []string{"local"}},
		{name: "DefaultQueue", got: def.DefaultQueue, want: "default"},
		{name: "MaxAttempts", got: def.MaxAttempts, want: 3},
		{name: "Timeout", got: def.Timeout, want: 10 * time.Minute},
		{name: "Scheduler", got: def.Scheduler == nil, want: true},
		{name: "Processor", got: def.Processor != nil, want: true},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestDeclareKeepsExplicitSettings(t *testing.T) {
	t.Parallel()
	typ := widgetType("widget")
	typ.Table = "custom_widgets"
	typ.DefaultProvider = "comfyui"
	typ.Providers = []string{"runpod", "comfyui", "runpod"}
	typ.DefaultQueue = "gpu"
	typ.MaxAttempts = 7
	typ.Timeout = time.Minute
	def, err := typ.Declare()
	if err != nil {
		t.Fatalf("Declare: %v", err)
	}
	if def.Table != "custom_widgets" || def.DefaultProvider != "comfyui" || def.DefaultQueue != "gpu" ||
		def.MaxAttempts != 7 || def.Timeout != time.Minute {
		t.Errorf("Declare overrode explicit settings: %+v", def)
	}
	if want := []string{"comfyui", "runpod"}; !reflect.DeepEqual(def.Providers, want) {
		t.Errorf("Providers = %v, want %v (default first, no duplicates)", def.Providers, want)
	}
}

func TestRegisterDuplicate(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	if err := reg.Register(widgetType("widget")); err != nil {
		t.Fatalf("first Register: %v", err)
	}
	err := reg.Register(plainType("widget"))
	if err == nil {
		t.Fatal("second Register of \"widget\" succeeded, want an error")
	}
	if !strings.Contains(err.Error(), `"widget"`) || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("duplicate error %q does not name the type and the problem", err)
	}
	if reg.Len() != 1 {
		t.Errorf("Len() = %d after a refused duplicate, want 1", reg.Len())
	}
	def, _ := reg.Lookup("widget")
	if def.Model != reflect.TypeFor[widgetFields]() {
		t.Errorf("the refused duplicate replaced the first registration (model %s)", def.Model)
	}
}

func TestMustRegisterPanicsOnDuplicate(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	reg.MustRegister(widgetType("widget"))
	defer func() {
		p := recover()
		if p == nil {
			t.Fatal("MustRegister of a duplicate did not panic")
		}
		if err, ok := p.(error); !ok || !strings.Contains(err.Error(), `"widget"`) {
			t.Errorf("MustRegister panicked with %v, want an error naming \"widget\"", p)
		}
	}()
	reg.MustRegister(widgetType("widget"))
}

func TestRegisterRefusesInvalidNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		typeName string
		want     string
	}{
		{name: "empty", typeName: "", want: "snake_case"},
		{name: "upper case", typeName: "Widget", want: "snake_case"},
		{name: "camel case", typeName: "imageAdjuster", want: "snake_case"},
		{name: "leading digit", typeName: "3d_render", want: "snake_case"},
		{name: "leading underscore", typeName: "_widget", want: "snake_case"},
		{name: "hyphen", typeName: "image-adjuster", want: "snake_case"},
		{name: "too long", typeName: "a" + strings.Repeat("b", 48), want: "at most 48"},
		{name: "reserved tasks", typeName: "tasks", want: "reserved"},
		{name: "reserved task", typeName: "task", want: "reserved"},
		{name: "reserved events", typeName: "events", want: "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := registry.New()
			err := reg.Register(widgetType(tt.typeName))
			if err == nil {
				t.Fatalf("Register(%q) succeeded, want an error", tt.typeName)
			}
			if !strings.Contains(err.Error(), `"`+tt.typeName+`"`) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Register(%q) error %q, want it to quote the name and say %q", tt.typeName, err, tt.want)
			}
			if reg.Len() != 0 {
				t.Errorf("Len() = %d after a refused registration", reg.Len())
			}
		})
	}
}

func TestValidateNameAcceptsGoodNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		typeName string
	}{
		{name: "single letter", typeName: "a"},
		{name: "snake case", typeName: "background_remove"},
		{name: "digits", typeName: "x2_upscale"},
		{name: "48 characters", typeName: "a" + strings.Repeat("b", 47)},
		{name: "contains a reserved word", typeName: "tasks_v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := registry.ValidateName(tt.typeName); err != nil {
				t.Errorf("ValidateName(%q) = %v, want nil", tt.typeName, err)
			}
		})
	}
}

// Test-only fields and update structs, each wrong in one way.
type (
	noDBTag struct {
		Text string `json:"text"`
	}
	badDBName struct {
		Text string `json:"text" db:"Text"`
	}
	idColumn struct {
		Ref string `json:"ref" db:"id"`
	}
	noJSONName struct {
		Text string `db:"text"`
	}
	baseJSONStatus struct {
		Status string `json:"status" db:"widget_status"`
	}
	baseJSONTaskType struct {
		Kind string `json:"task_type" db:"kind"`
	}
	dupDB struct {
		A string `json:"a" db:"same"`
		B string `json:"b" db:"same"`
	}
	chanField struct {
		C chan int `json:"c" db:"c"`
	}
	funcField struct {
		F func() `json:"f" db:"f"`
	}
	complexField struct {
		Z complex128 `json:"z" db:"z"`
	}
	noColumns struct {
		Skipped string `json:"skipped" db:"-"`
	}
	updNotPointer struct {
		Label string `json:"label"`
	}
	updMissing struct {
		Colour *string `json:"colour"`
	}
	updReadOnly struct {
		Output *string `json:"output"`
	}
	updMismatch struct {
		Label *int `json:"label"`
	}
	updPointerToPointer struct {
		Note **string `json:"note"`
	}
)

func TestDeclareErrors(t *testing.T) {
	t.Parallel()
	sqliteOnly := fstest.MapFS{"sqlite/1_x.sql": {Data: []byte("-- +goose Up\nSELECT 1;\n")}}
	postgresOnly := fstest.MapFS{"postgres/1_x.sql": {Data: []byte("-- +goose Up\nSELECT 1;\n")}}
	noProcessor := widgetType("widget")
	noProcessor.Processor = nil
	nilMigrations := widgetType("widget")
	nilMigrations.Migrations = nil
	noPostgres := widgetType("widget")
	noPostgres.Migrations = sqliteOnly
	noSQLite := widgetType("widget")
	noSQLite.Migrations = postgresOnly
	wrongFolder := widgetType("widget")
	wrongFolder.Migrations = fstest.MapFS{"1_x.sql": {Data: []byte("-- +goose Up\n")}}

	tests := []struct {
		name string
		decl registry.Declaration
		want []string
	}{
		{name: "no processor", decl: noProcessor, want: []string{"no processor"}},
		{name: "no migrations", decl: nilMigrations, want: []string{"no migrations"}},
		{name: "no postgres migrations", decl: noPostgres, want: []string{"no postgres/*.sql migrations"}},
		{name: "no sqlite migrations", decl: noSQLite, want: []string{"no sqlite/*.sql migrations"}},
		{name: "migrations not in dialect folders", decl: wrongFolder, want: []string{"no sqlite/*.sql migrations"}},
		{name: "fields not a struct", decl: typeOf[int, struct{}]("widget"), want: []string{"must be a struct"}},
		{name: "field without db tag", decl: typeOf[noDBTag, struct{}]("widget"), want: []string{"field Text has no db tag"}},
		{name: "db name not snake case", decl: typeOf[badDBName, struct{}]("widget"), want: []string{"field Text", `"Text"`, "snake_case"}},
		{name: "db name id", decl: typeOf[idColumn, struct{}]("widget"), want: []string{"field Ref", `"id"`, "primary key"}},
		{name: "no json name", decl: typeOf[noJSONName, struct{}]("widget"), want: []string{"field Text has no json name"}},
		{name: "json name status", decl: typeOf[baseJSONStatus, struct{}]("widget"), want: []string{"field Status", `"status"`, "base task field"}},
		{name: "json name task_type", decl: typeOf[baseJSONTaskType, struct{}]("widget"), want: []string{"field Kind", `"task_type"`, "base task field"}},
		{name: "duplicate db names", decl: typeOf[dupDB, struct{}]("widget"), want: []string{"field B", `duplicate db name "same"`}},
		{name: "chan field", decl: typeOf[chanField, struct{}]("widget"), want: []string{"field C", "unsupported field type chan int"}},
		{name: "func field", decl: typeOf[funcField, struct{}]("widget"), want: []string{"field F", "unsupported field type func()"}},
		{name: "complex field", decl: typeOf[complexField, struct{}]("widget"), want: []string{"field Z", "unsupported field type complex128"}},
		{name: "no columns", decl: typeOf[noColumns, struct{}]("widget"), want: []string{"no fields with db tags"}},
		{name: "update not a struct", decl: typeOf[widgetFields, string]("widget"), want: []string{"update struct", "must be a struct"}},
		{name: "update field not a pointer", decl: typeOf[widgetFields, updNotPointer]("widget"), want: []string{"update struct", "field Label must be a pointer"}},
		{name: "update field missing from model", decl: typeOf[widgetFields, updMissing]("widget"), want: []string{"field Colour", `"colour" is not a field of the model`}},
		{name: "update field read-only", decl: typeOf[widgetFields, updReadOnly]("widget"), want: []string{"field Output", `"output" is read-only`}},
		{name: "update type mismatch", decl: typeOf[widgetFields, updMismatch]("widget"), want: []string{"field Label is *int, want *string"}},
		{name: "update pointer to pointer", decl: typeOf[widgetFields, updPointerToPointer]("widget"), want: []string{"field Note is **string, want *string"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			def, err := tt.decl.Declare()
			if err == nil {
				t.Fatalf("Declare succeeded (%+v), want an error", def)
			}
			if def != nil {
				t.Errorf("Declare returned a definition with its error")
			}
			msg := err.Error()
			if !strings.Contains(msg, `task type "widget"`) {
				t.Errorf("error %q does not name the task type", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			reg := registry.New()
			if err := reg.Register(tt.decl); err == nil || reg.Len() != 0 {
				t.Errorf("Register accepted the invalid declaration (err %v, Len %d)", err, reg.Len())
			}
		})
	}
}

func TestColumns(t *testing.T) {
	t.Parallel()
	def, err := widgetType("widget").Declare()
	if err != nil {
		t.Fatalf("Declare: %v", err)
	}
	want := []struct {
		name     string
		json     string
		kind     registry.Kind
		nullable bool
		readOnly bool
		typ      reflect.Type
	}{
		{name: "label", json: "label", kind: registry.KindString, typ: reflect.TypeFor[string]()},
		{name: "count", json: "count", kind: registry.KindInt, typ: reflect.TypeFor[int]()},
		{name: "big", json: "big", kind: registry.KindInt, typ: reflect.TypeFor[int64]()},
		{name: "ratio", json: "ratio", kind: registry.KindFloat, typ: reflect.TypeFor[float64]()},
		{name: "on_flag", json: "on", kind: registry.KindBool, typ: reflect.TypeFor[bool]()},
		{name: "at", json: "at", kind: registry.KindTime, typ: reflect.TypeFor[time.Time]()},
		{name: "note", json: "note", kind: registry.KindString, nullable: true, typ: reflect.TypeFor[*string]()},
		{name: "limit_n", json: "limit", kind: registry.KindInt, nullable: true, typ: reflect.TypeFor[*int]()},
		{name: "deadline", json: "deadline", kind: registry.KindTime, nullable: true, typ: reflect.TypeFor[*time.Time]()},
		{name: "tags", json: "tags", kind: registry.KindJSON, nullable: true, typ: reflect.TypeFor[[]string]()},
		{name: "meta", json: "meta", kind: registry.KindJSON, nullable: true, typ: reflect.TypeFor[map[string]int]()},
		{name: "nested", json: "nested", kind: registry.KindJSON, nullable: true, typ: reflect.TypeFor[*nested]()},
		{name: "output", json: "output", kind: registry.KindString, readOnly: true, typ: reflect.TypeFor[string]()},
	}
	if len(def.Columns) != len(want) {
		names := make([]string, len(def.Columns))
		for i, c := range def.Columns {
			names[i] = c.Name
		}
		t.Fatalf("Columns = %v, want %d columns", names, len(want))
	}
	model := reflect.TypeFor[widgetFields]()
	for i, w := range want {
		c := def.Columns[i]
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			if c.Name != w.name || c.JSONName != w.json || c.Kind != w.kind || c.Nullable != w.nullable ||
				c.ReadOnly != w.readOnly || c.Type != w.typ {
				t.Errorf("column %d = {%s %s %s nullable=%v readOnly=%v %s}, want {%s %s %s nullable=%v readOnly=%v %s}",
					i, c.Name, c.JSONName, c.Kind, c.Nullable, c.ReadOnly, c.Type,
					w.name, w.json, w.kind, w.nullable, w.readOnly, w.typ)
			}
			if f := model.FieldByIndex(c.Index); f.Tag.Get("db") != w.name {
				t.Errorf("column %s: Index %v locates field %s (db %q)", w.name, c.Index, f.Name, f.Tag.Get("db"))
			}
		})
	}
}

func TestKindString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		kind registry.Kind
		want string
	}{
		{name: "string", kind: registry.KindString, want: "string"},
		{name: "int", kind: registry.KindInt, want: "int"},
		{name: "float", kind: registry.KindFloat, want: "float"},
		{name: "bool", kind: registry.KindBool, want: "bool"},
		{name: "time", kind: registry.KindTime, want: "time"},
		{name: "json", kind: registry.KindJSON, want: "json"},
		{name: "zero", kind: 0, want: "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.kind.String(); got != tt.want {
				t.Errorf("Kind(%d).String() = %q, want %q", int(tt.kind), got, tt.want)
			}
		})
	}
}

func TestApplyUpdate(t *testing.T) {
	t.Parallel()
	def, err := widgetType("widget").Declare()
	if err != nil {
		t.Fatalf("Declare: %v", err)
	}
	label, count, note := "new label", 5, "a note"
	tags := []string{"x", "y"}
	oldNote := "old note"
	tests := []struct {
		name    string
		upd     widgetUpdate
		want    func(w *widgetFields)
		changed []string
	}{
		{name: "nothing", upd: widgetUpdate{}, want: func(*widgetFields) {}, changed: nil},
		{name: "value field", upd: widgetUpdate{Label: &label}, want: func(w *widgetFields) { w.Label = label }, changed: []string{"label"}},
		{
			name:    "value and pointer fields",
			upd:     widgetUpdate{Count: &count, Note: &note},
			want:    func(w *widgetFields) { w.Count, w.Note = count, &note },
			changed: []string{"count", "note"},
		},
		{
			name:    "every field",
			upd:     widgetUpdate{Label: &label, Count: &count, Note: &note, Tags: &tags},
			want:    func(w *widgetFields) { w.Label, w.Count, w.Note, w.Tags = label, count, &note, tags },
			changed: []string{"label", "count", "note", "tags"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := func() *widgetFields {
				return &widgetFields{Label: "old", Count: 2, Ratio: 0.5, Note: &oldNote, Tags: []string{"old"}, Output: "out"}
			}
			model, want := base(), base()
			tt.want(want)
			upd := tt.upd
			changed := def.ApplyUpdate(model, &upd)
			if !reflect.DeepEqual(model, want) {
				t.Errorf("after ApplyUpdate model = %+v, want %+v", model, want)
			}
			var names []string
			for _, c := range changed {
				names = append(names, c.Name)
			}
			if !reflect.DeepEqual(names, tt.changed) {
				t.Errorf("changed columns = %v, want %v", names, tt.changed)
			}
		})
	}
}

func TestFieldAndFieldsJSON(t *testing.T) {
	t.Parallel()
	def, err := widgetType("widget").Declare()
	if err != nil {
		t.Fatalf("Declare: %v", err)
	}
	m := &widgetFields{Label: "hello", Count: 3}
	for _, c := range def.Columns {
		if c.Name != "count" {
			continue
		}
		f := registry.Field(m, c)
		if f.Int() != 3 {
			t.Errorf("Field(count) = %d, want 3", f.Int())
		}
		f.SetInt(9)
		if m.Count != 9 {
			t.Errorf("setting Field(count) did not change the model: Count = %d", m.Count)
		}
	}
	b, err := registry.FieldsJSON(m)
	if err != nil {
		t.Fatalf("FieldsJSON: %v", err)
	}
	if !strings.Contains(string(b), `"label":"hello"`) || !strings.Contains(string(b), `"count":9`) {
		t.Errorf("FieldsJSON = %s, want label and count", b)
	}
}

func TestNewModel(t *testing.T) {
	t.Parallel()
	def, err := widgetType("widget").Declare()
	if err != nil {
		t.Fatalf("Declare: %v", err)
	}
	a, b := def.NewModel(), def.NewModel()
	wa, ok := a.(*widgetFields)
	if !ok {
		t.Fatalf("NewModel() = %T, want *widgetFields", a)
	}
	wb, ok := b.(*widgetFields)
	if !ok {
		t.Fatalf("NewModel() = %T, want *widgetFields", b)
	}
	if wa == wb {
		t.Fatal("NewModel returned the same pointer twice")
	}
	if !reflect.DeepEqual(*wa, widgetFields{}) {
		t.Errorf("NewModel() = %+v, want the zero value", *wa)
	}
	wa.Label = "changed"
	if wb.Label != "" {
		t.Errorf("changing one model changed another: %q", wb.Label)
	}
}

func TestPrepareModel(t *testing.T) {
	t.Parallel()
	widget, err := widgetType("widget").Declare()
	if err != nil {
		t.Fatalf("Declare widget: %v", err)
	}
	plain, err := plainType("plain").Declare()
	if err != nil {
		t.Fatalf("Declare plain: %v", err)
	}
	tests := []struct {
		name      string
		def       *registry.Definition
		model     any
		wantErr   string
		wantModel any
	}{
		{name: "defaults applied", def: widget, model: &widgetFields{Label: "x"}, wantModel: &widgetFields{Label: "x", Count: 1}},
		{name: "explicit value kept", def: widget, model: &widgetFields{Label: "x", Count: 4}, wantModel: &widgetFields{Label: "x", Count: 4}},
		{name: "validator refuses", def: widget, model: &widgetFields{}, wantErr: "label: must not be empty", wantModel: &widgetFields{Count: 1}},
		{name: "no hooks", def: plain, model: &plainFields{}, wantModel: &plainFields{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.def.PrepareModel(tt.model)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("PrepareModel: %v", err)
			case tt.wantErr != "":
				var fe *registry.FieldError
				if !errors.As(err, &fe) || fe.Field != "label" || err.Error() != tt.wantErr {
					t.Errorf("PrepareModel error = %v, want FieldError %q", err, tt.wantErr)
				}
			}
			if !reflect.DeepEqual(tt.model, tt.wantModel) {
				t.Errorf("model after PrepareModel = %+v, want %+v", tt.model, tt.wantModel)
			}
		})
	}
}

func TestNamesAndAllSorted(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	for _, n := range []string{"zeta", "alpha", "mid", "beta"} {
		if err := reg.Register(plainType(n)); err != nil {
			t.Fatalf("Register(%s): %v", n, err)
		}
	}
	want := []string{"alpha", "beta", "mid", "zeta"}
	names := reg.Names()
	if !reflect.DeepEqual(names, want) {
		t.Errorf("Names() = %v, want %v", names, want)
	}
	all := reg.All()
	if len(all) != len(want) {
		t.Fatalf("All() has %d definitions, want %d", len(all), len(want))
	}
	for i, d := range all {
		if d.Name != want[i] {
			t.Errorf("All()[%d].Name = %q, want %q", i, d.Name, want[i])
		}
	}
	names[0] = "changed"
	if got := reg.Names()[0]; got != "alpha" {
		t.Errorf("changing the slice Names returned changed the registry: %q", got)
	}
	if reg.Len() != 4 {
		t.Errorf("Len() = %d, want 4", reg.Len())
	}
}

func TestEmptyRegistry(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	if reg.Len() != 0 || len(reg.Names()) != 0 || len(reg.All()) != 0 {
		t.Errorf("new registry is not empty: Len %d, Names %v, All %d", reg.Len(), reg.Names(), len(reg.All()))
	}
}

// recordingRuntime is a registry.Runtime that only counts progress calls.
type recordingRuntime struct{ progress []float64 }

func (r *recordingRuntime) Progress(_ context.Context, p float64, _ string) error {
	r.progress = append(r.progress, p)
	return nil
}
func (r *recordingRuntime) SaveFields(context.Context) error               { return nil }
func (r *recordingRuntime) SetServiceTaskID(context.Context, string) error { return nil }
func (r *recordingRuntime) SetExecutorHandle(context.Context, json.RawMessage, string) error {
	return nil
}
func (r *recordingRuntime) AddError(context.Context, task.Error) error { return nil }
func (r *recordingRuntime) PutArtifact(context.Context, string, string, []byte) (task.Artifact, error) {
	return task.Artifact{}, nil
}

var _ registry.Runtime = (*recordingRuntime)(nil)

func TestErasedProcessor(t *testing.T) {
	t.Parallel()
	typ := widgetType("widget")
	var seen *registry.Job[widgetFields]
	typ.Processor = registry.ProcessorFunc[widgetFields](func(ctx context.Context, job *registry.Job[widgetFields]) (*task.Result, error) {
		seen = job
		if err := job.Progress(ctx, 42, "half"); err != nil {
			return nil, err
		}
		return &task.Result{Data: job.Fields.Label}, nil
	})
	def, err := typ.Declare()
	if err != nil {
		t.Fatalf("Declare: %v", err)
	}
	tk := &task.Task{ID: uuid.New(), Type: "widget"}
	fields := &widgetFields{Label: "typed"}
	env := &recordingRuntime{}
	res, err := def.Processor.Process(t.Context(), &registry.Run{Task: tk, Fields: fields, Env: env})
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	if res.Data != "typed" {
		t.Errorf("result data = %v, want the typed field \"typed\"", res.Data)
	}
	if seen == nil || seen.Task != tk || seen.Fields != fields {
		t.Errorf("the typed processor did not get the run's task and fields: %+v", seen)
	}
	if !reflect.DeepEqual(env.progress, []float64{42}) {
		t.Errorf("progress reached the runtime as %v, want [42]", env.progress)
	}

	_, err = def.Processor.Process(t.Context(), &registry.Run{Task: tk, Fields: &plainFields{}, Env: env})
	if err == nil || !task.IsPermanent(err) {
		t.Fatalf("Process with fields of another type = %v, want a permanent error", err)
	}
	if !strings.Contains(err.Error(), "*registry_test.plainFields") || !strings.Contains(err.Error(), tk.ID.String()) {
		t.Errorf("error %q does not name the task and the wrong type", err)
	}
}

// queueScheduler puts tasks with a high count in the "big" queue.
type queueScheduler struct{}

func (queueScheduler) Schedule(_ context.Context, t *task.Task, f *widgetFields) error {
	if f.Count > 10 {
		t.QueueName = "big"
	}
	return nil
}

func TestErasedScheduler(t *testing.T) {
	t.Parallel()
	typ := widgetType("widget")
	typ.Scheduler = queueScheduler{}
	def, err := typ.Declare()
	if err != nil {
		t.Fatalf("Declare: %v", err)
	}
	if def.Scheduler == nil {
		t.Fatal("Scheduler is nil though the type declares one")
	}
	tk := &task.Task{QueueName: "default"}
	if err := def.Scheduler.Schedule(t.Context(), tk, &widgetFields{Count: 11}); err != nil {
		t.Fatalf("Schedule: %v", err)
	}
	if tk.QueueName != "big" {
		t.Errorf("QueueName = %q after Schedule, want \"big\"", tk.QueueName)
	}
	if err := def.Scheduler.Schedule(t.Context(), tk, &plainFields{}); err == nil {
		t.Error("Schedule with fields of another type succeeded, want an error")
	}
}

func TestSub(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{"migrations/sqlite/1_x.sql": {Data: []byte("x")}}
	sub := registry.Sub(fsys, "migrations")
	if _, err := sub.Open("sqlite/1_x.sql"); err != nil {
		t.Errorf("Sub(migrations).Open(sqlite/1_x.sql): %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Sub with an invalid path did not panic")
		}
	}()
	registry.Sub(fsys, "../outside")
}
