package scaffold

import (
	"strings"
	"testing"
)

func TestRegisterSource(t *testing.T) {
	t.Parallel()
	const head = "package tasks\n\nimport (\n\t\"example.com/m/internal/registry\"\n\t\"example.com/m/internal/tasks/echo\"\n)\n\n"
	tests := []struct {
		name    string
		src     string
		want    []string
		wantErr string
	}{
		{
			name: "one entry per line",
			src:  head + "func Register(reg *registry.Registry) error {\n\tfor _, t := range []registry.Declaration{\n\t\techo.Type(),\n\t} {\n\t\t_ = t\n\t}\n\treturn nil\n}\n",
			want: []string{"\t\"example.com/m/internal/tasks/echo\"\n\t\"example.com/m/internal/tasks/wordcount\"\n)", "\t\techo.Type(),\n\t\twordcount.Type(),\n\t} {"},
		},
		{
			name: "list closed on its last line",
			src:  head + "func Register(reg *registry.Registry) error {\n\tfor _, t := range []registry.Declaration{echo.Type()} {\n\t\t_ = t\n\t}\n\treturn nil\n}\n",
			want: []string{"echo.Type(),\n\t\twordcount.Type(),\n\t} {"},
		},
		{
			name: "empty list",
			src:  head + "func Register(reg *registry.Registry) error {\n\t_ = echo.Type\n\tfor _, t := range []registry.Declaration{\n\t} {\n\t\t_ = t\n\t}\n\treturn nil\n}\n",
			want: []string{"[]registry.Declaration{\n\t\twordcount.Type(),\n\t} {"},
		},
		{
			name:    "no list",
			src:     head + "func Register(reg *registry.Registry) error { _ = echo.Type; return nil }\n",
			wantErr: "found no []registry.Declaration{…} literal in func Register; add the import \"example.com/m/internal/tasks/wordcount\" and the line `wordcount.Type(),` to the list in Register by hand",
		},
		{
			name:    "already imported",
			src:     strings.Replace(head, "echo\"", "echo\"\n\t\"example.com/m/internal/tasks/wordcount\"", 1) + "func Register() {}\n",
			wantErr: "already imports example.com/m/internal/tasks/wordcount",
		},
		{name: "not Go", src: "package", wantErr: "parsing internal/tasks/register.go"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := registerSource([]byte(tt.src), "example.com/m/internal/tasks/wordcount", "wordcount")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("missing %q in\n%s", w, out)
				}
			}
		})
	}
}
