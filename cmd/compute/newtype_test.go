package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI executes the command line in-process and returns stdout.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRoot(&stdout, &stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	if stderr.Len() > 0 {
		t.Logf("stderr of %v:\n%s", args, stderr.String())
	}
	return stdout.String(), err
}

// fakeRepo has go.mod and the real register.go: enough to generate into.
func fakeRepo(t *testing.T) string {
	t.Helper()
	register, err := os.ReadFile("../../internal/tasks/register.go")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "internal/tasks"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module github.com/computeserver/compute\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "internal/tasks/register.go"), register, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestNewTaskTypeWritesTheType(t *testing.T) {
	t.Parallel()
	root := fakeRepo(t)
	out, err := runCLI(t, "new-task-type", "word_count", "--dir", root,
		"--field", "text:string:min=1,max=100000", "--field", "language:string:enum=en|fr,default=en")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`Wrote task type "word_count" (package wordcount):`, "  internal/tasks/wordcount/wordcount.go",
		"  internal/tasks/register.go", "go test ./internal/tasks/wordcount/ ./internal/conformance/", "docs/adding-a-task-type.md"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Commas inside one --field stay in that field.
	src, err := os.ReadFile(filepath.Join(root, "internal/tasks/wordcount/wordcount.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`minLength:"1" maxLength:"100000"`, `enum:"en,fr" default:"en"`} {
		if !strings.Contains(string(src), want) {
			t.Errorf("wordcount.go lacks %q", want)
		}
	}
}

func TestNewTaskTypeRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no name", nil, "accepts 1 arg(s), received 0"},
		{"invalid name", []string{"Word-Count"}, `task type name "Word-Count" must be lower-case snake_case`},
		{"reserved name", []string{"events"}, `task type name "events" is reserved`},
		{"registered type", []string{"image_adjuster"}, `task type "image_adjuster" is already registered`},
		{"keyword", []string{"go"}, `its package name "go" is a Go keyword`},
		{"bad field", []string{"x", "--field", "size:uint"}, `field "size": unknown type "uint"`},
		{"no repository", []string{"x", "--dir", "/"}, "--dir /: no go.mod there"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"new-task-type"}, tt.args...)
			if !strings.Contains(strings.Join(tt.args, " "), "--dir") {
				args = append(args, "--dir", fakeRepo(t))
			}
			if _, err := runCLI(t, args...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
