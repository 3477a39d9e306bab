package scaffold_test

import (
	"go/format"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/scaffold"
)

// fakeRepo is a repository with go.mod, the real register.go, an echo
// type folder and one migration; enough for Generate, not for building.
func fakeRepo(t *testing.T) string {
	t.Helper()
	register, err := os.ReadFile("../tasks/register.go")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for name, src := range map[string]string{
		"go.mod":                   "module github.com/computeserver/compute\n\ngo 1.26\n",
		scaffold.RegisterFile:      string(register),
		"internal/tasks/echo/e.go": "package echo\n\nconst Name = \"echo\"\n",
		"internal/tasks/echo/migrations/sqlite/20260101000100_echo.sql":   "",
		"internal/tasks/echo/migrations/postgres/20260101000100_echo.sql": "",
		"internal/tasks/legacy/legacy.go":                                 "package legacy\n\nfunc Type() registry.Type[F, U] {\n\treturn registry.Type[F, U]{Name: \"old_name\"}\n}\n",
	} {
		write(t, filepath.Join(root, name), src)
	}
	return root
}

func write(t *testing.T, path, src string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// snapshot lists every file under root with its content.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestParseField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec    string
		want    scaffold.Field
		wantErr string
	}{
		{spec: "prompt:string:min=1,max=2000", want: scaffold.Field{Name: "prompt", Type: "string", Min: "1", Max: "2000"}},
		{spec: "steps:int:min=0,max=100,default=5", want: scaffold.Field{Name: "steps", Type: "int", Min: "0", Max: "100", Default: "5"}},
		{spec: "scale:float:min=0,max=1", want: scaffold.Field{Name: "scale", Type: "float", Min: "0", Max: "1"}},
		{spec: "seed:int:optional", want: scaffold.Field{Name: "seed", Type: "int", Optional: true}},
		{spec: "format:string:enum=png|jpeg,default=png", want: scaffold.Field{Name: "format", Type: "string", Enum: []string{"png", "jpeg"}, Default: "png"}},
		{spec: "tags:[]string:max=5", want: scaffold.Field{Name: "tags", Type: "[]string", Max: "5"}},
		{spec: "meta:json", want: scaffold.Field{Name: "meta", Type: "json"}},
		{spec: "at:time", want: scaffold.Field{Name: "at", Type: "time"}},
		{spec: "on:bool:default=true", want: scaffold.Field{Name: "on", Type: "bool", Default: "true"}},
		{spec: "result_path:string:output", want: scaffold.Field{Name: "result_path", Type: "string", Output: true}},
		{spec: "prompt", wantErr: "want name:type[:constraints]"},
		{spec: "Prompt:string", wantErr: "must be lower-case snake_case"},
		{spec: "id:string", wantErr: "id is the primary key"},
		{spec: "priority:int", wantErr: "priority is a field of every task"},
		{spec: "x:uint", wantErr: `unknown type "uint" (known: string, int, float, bool, time, []string, json)`},
		{spec: "x:int:min=a", wantErr: "min=a is not an integer"},
		{spec: "x:float:max=b", wantErr: "max=b is not a number"},
		{spec: "x:string:min=-1", wantErr: "a length cannot be negative"},
		{spec: "x:int:min=5,max=1", wantErr: "min 5 is greater than max 1"},
		{spec: "x:int:min=0,max=10,default=11", wantErr: "default 11 is outside min 0 and max 10"},
		{spec: "x:string:max=3,default=toolong", wantErr: "default toolong is outside"},
		{spec: "x:bool:default=maybe", wantErr: `default "maybe" is not true or false`},
		{spec: "x:bool:min=1", wantErr: "min does not apply to a bool field"},
		{spec: "x:time:default=now", wantErr: "a time field cannot have a default"},
		{spec: "x:int:enum=1|2", wantErr: "enum applies to string fields"},
		{spec: "x:string:enum=a|b,default=c", wantErr: `default "c" is not one of the enum values a, b`},
		{spec: "x:string:optional,default=a", wantErr: "an optional field is null when absent"},
		{spec: "x:string:output,max=3", wantErr: "an output field is written by the processor"},
		{spec: "x:string:nullable", wantErr: `unknown constraint "nullable"`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			t.Parallel()
			got, err := scaffold.ParseField(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestGenerateRefuses: invalid, reserved and existing names, and names
// whose package would clash, are refused with a clear message, and
// nothing is written.
func TestGenerateRefuses(t *testing.T) {
	t.Parallel()
	field := func(spec string) scaffold.Field {
		f, err := scaffold.ParseField(spec)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	tests := []struct {
		name    string
		fields  []scaffold.Field
		wantErr string
	}{
		{name: "", wantErr: "must be lower-case snake_case"},
		{name: "Word-Count", wantErr: `task type name "Word-Count" must be lower-case snake_case`},
		{name: "1st", wantErr: "must be lower-case snake_case"},
		{name: strings.Repeat("a", 49), wantErr: "at most 48 characters"},
		{name: "tasks", wantErr: `task type name "tasks" is reserved`},
		{name: "events", wantErr: `task type name "events" is reserved`},
		{name: "generation", wantErr: `task type "generation" is already registered`},
		{name: "echo", wantErr: `task type "echo" is already registered`},
		{name: "legacy", wantErr: `internal/tasks/legacy already exists`},
		{name: "e_c_h_o", wantErr: `internal/tasks/echo already exists: task type "e_c_h_o" (or one whose name differs only in underscores) exists`},
		{name: "old_name", wantErr: `task type "old_name" is already declared in internal/tasks/legacy/legacy.go`},
		{name: "type", wantErr: `its package name "type" is a Go keyword`},
		{name: "func_", wantErr: `its package name "func" is a Go keyword`},
		{name: "string", wantErr: `its package name "string" is a predeclared Go identifier`},
		{name: "len", wantErr: "predeclared Go identifier"},
		{name: "main", wantErr: `"main" cannot be the package of a task type`},
		{name: "uuid", wantErr: `the package name "uuid" would clash with the import "github.com/google/uuid"`},
		{name: "registry", wantErr: `would clash with the import "github.com/computeserver/compute/internal/registry"`},
		{name: "context", wantErr: `would clash with the import "context"`},
		{name: "artifact", wantErr: `would clash with the import "github.com/computeserver/compute/internal/artifact" in internal/tasks/register.go`},
		{name: "sample", wantErr: `would clash with wordcount_test.go's own sample`},
		{name: "ptr", fields: []scaffold.Field{field("n:int:optional")}, wantErr: "own ptr"},
		{name: "dup", fields: []scaffold.Field{field("a:int"), field("a:string")}, wantErr: `field "a": declared twice`},
		{name: "outs", fields: []scaffold.Field{field("a:int:output")}, wantErr: "needs at least one input field"},
		{name: "gonames", fields: []scaffold.Field{field("image_url:string"), field("image_u_r_l:string")}, wantErr: "its Go name ImageURL is also the Go name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := fakeRepo(t)
			before := snapshot(t, root)
			_, err := scaffold.Generate(scaffold.Options{Root: root, Name: tt.name, Fields: tt.fields, Registered: []string{"echo", "generation"}})
			want := strings.ReplaceAll(tt.wantErr, "wordcount_test.go", scaffold.PackageName(tt.name)+"_test.go")
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v, want one containing %q", err, want)
			}
			if after := snapshot(t, root); !reflect.DeepEqual(after, before) {
				t.Errorf("a refused generation changed the repository")
			}
		})
	}
}

func TestGenerateWritesTheType(t *testing.T) {
	t.Parallel()
	root := fakeRepo(t)
	write(t, filepath.Join(root, "internal/tasks/echo/migrations/sqlite/20990101000000_future.sql"), "")
	var fields []scaffold.Field
	for _, s := range []string{"text:string:min=1", "n:int:optional", "at:time", "out:string:output"} {
		f, err := scaffold.ParseField(s)
		if err != nil {
			t.Fatal(err)
		}
		fields = append(fields, f)
	}
	res, err := scaffold.Generate(scaffold.Options{Root: root, Name: "word_count", Fields: fields,
		Now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"internal/tasks/wordcount/processor.go", "internal/tasks/wordcount/scheduler.go",
		"internal/tasks/wordcount/wordcount.go", "internal/tasks/wordcount/wordcount_test.go",
		"internal/tasks/wordcount/migrations/postgres/20990101000001_word_count.sql",
		"internal/tasks/wordcount/migrations/sqlite/20990101000001_word_count.sql",
		scaffold.RegisterFile,
	}
	if res.Package != "wordcount" || res.Dir != "internal/tasks/wordcount" || !reflect.DeepEqual(res.Files, want) {
		t.Errorf("result %+v, want files %v", res, want)
	}
	for _, f := range res.Files {
		src, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".go") {
			if formatted, err := format.Source(src); err != nil || string(formatted) != string(src) {
				t.Errorf("%s is not gofmt'd (%v)", f, err)
			}
		}
	}
	reg, _ := os.ReadFile(filepath.Join(root, scaffold.RegisterFile))
	for _, w := range []string{"\t\"github.com/computeserver/compute/internal/tasks/wordcount\"\n", "\t\twordcount.Type(),\n\t} {"} {
		if !strings.Contains(string(reg), w) {
			t.Errorf("register.go lacks %q:\n%s", w, reg)
		}
	}
	model, _ := os.ReadFile(filepath.Join(root, "internal/tasks/wordcount/wordcount.go"))
	for _, w := range []string{
		"Text string    `json:\"text\" db:\"text\" minLength:\"1\" doc:\"Text.\"`",
		"N    *int      `json:\"n,omitempty\" db:\"n\" doc:\"N.\"`",
		"Out  *string   `json:\"out,omitempty\" db:\"out\" readOnly:\"true\" doc:\"Out. Written by the processor.\"`",
		"\"at\":   \"2026-01-02T03:04:05Z\",",
	} {
		if !strings.Contains(string(model), w) {
			t.Errorf("wordcount.go lacks %q:\n%s", w, model)
		}
	}
	if strings.Contains(string(model), "Out *string `json") || strings.Contains(string(model), "\"out\":") {
		t.Error("the output field is in Update or in an example body")
	}
	// A second run is refused: the folder exists.
	if _, err := scaffold.Generate(scaffold.Options{Root: root, Name: "word_count"}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second run: %v", err)
	}
}

func TestNextVersion(t *testing.T) {
	t.Parallel()
	root := fakeRepo(t)
	now := time.Date(2026, 11, 26, 22, 10, 46, 0, time.FixedZone("CET", 3600))
	if v, err := scaffold.NextVersion(root, now); err != nil || v != 20261126211046 {
		t.Errorf("NextVersion = %d (%v), want now in UTC, 20261126211046", v, err)
	}
	write(t, filepath.Join(root, "x/migrations/postgres/20270101000000_x.sql"), "")
	write(t, filepath.Join(root, "x/migrations/other/20280101000000_x.sql"), "") // not a dialect folder
	write(t, filepath.Join(root, ".git/migrations/sqlite/20290101000000_x.sql"), "")
	if v, err := scaffold.NextVersion(root, now); err != nil || v != 20270101000001 {
		t.Errorf("NextVersion = %d (%v), want one above the highest, 20270101000001", v, err)
	}
}
