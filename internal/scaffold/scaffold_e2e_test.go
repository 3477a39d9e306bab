package scaffold_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/scaffold"
)

// TestGeneratedTypeBuildsAndPasses is the promise of `compute
// new-task-type`: in a copy of the repository, a type generated with a
// field of every kind is vetted, and its own tests and the conformance
// suite pass without a single edit. It compiles the copy, so it takes a
// while: it runs in CI (CI=true) or when COMPUTE_SCAFFOLD_E2E is set.
func TestGeneratedTypeBuildsAndPasses(t *testing.T) {
	if os.Getenv("CI") != "true" && os.Getenv("COMPUTE_SCAFFOLD_E2E") == "" {
		t.Skip("compiles a copy of the repository; runs with CI=true or COMPUTE_SCAFFOLD_E2E=1")
	}
	t.Parallel()
	began := time.Now()
	src, err := scaffold.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	copyRepo(t, src, root)

	var fields []scaffold.Field
	for _, spec := range []string{
		"text:string:min=1,max=100000", "language:string:enum=en|fr|de,default=en",
		"max_words:int:min=0,max=100,default=5", "threshold:float:min=0,max=1", "lowercase:bool",
		"not_before:time:optional", "tags:[]string:max=5", "options:json:optional", "nickname:string:optional",
		"weight:float:optional", "count:int:optional", "flag:bool:optional", "words:int:output", "summary:string:output",
	} {
		f, err := scaffold.ParseField(spec)
		if err != nil {
			t.Fatal(err)
		}
		fields = append(fields, f)
	}
	reg, err := app.NewRegistry(app.NewFetcher(config.Default(), nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := scaffold.Generate(scaffold.Options{Root: root, Name: "e2e_sample", Fields: fields, Registered: reg.Names()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %s in %s", strings.Join(res.Files, ", "), time.Since(began).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	goCmd(ctx, t, root, "vet", "./internal/tasks/...")
	args := []string{"test", "-count=1", "-v"}
	if raceEnabled {
		args = append(args, "-race")
	}
	out := goCmd(ctx, t, root, append(args, "./"+res.Dir+"/...", "./internal/conformance/...")...)
	for _, want := range []string{
		"--- PASS: TestStoreRoundTrip/sqlite", "--- PASS: TestProcessFailures",
		"--- PASS: TestBuiltinTypes/Declarations/e2e_sample",
		"--- PASS: TestBuiltinTypes/sqlite/Types/e2e_sample/Table",
		"--- PASS: TestBuiltinTypes/sqlite/Types/e2e_sample/Example/completes",
		"--- PASS: TestBuiltinTypes/sqlite/Types/e2e_sample/Example/a_provider_without_an_executor",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	t.Logf("copied, generated, vetted and tested in %s", time.Since(began).Round(time.Millisecond))
}

// goCmd runs the go command in dir with this process's environment (so
// GOFLAGS, GOCACHE and GOMODCACHE are shared) and returns its output,
// failing the test if it fails.
func goCmd(ctx context.Context, t *testing.T, dir string, args ...string) string {
	t.Helper()
	began := time.Now()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("go %s: %s", strings.Join(args, " "), time.Since(began).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, tail(out.String(), 20000))
	}
	return out.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// copyRepo copies the repository's files (those git tracks or would
// track; without git, every file but .git, data and bin) to dst.
func copyRepo(t *testing.T, src, dst string) {
	t.Helper()
	var files []string
	out, err := exec.Command("git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err == nil {
		files = strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	} else {
		err = filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && p != src && (d.Name() == ".git" || d.Name() == "data" || d.Name() == "bin") {
				return filepath.SkipDir
			}
			if !d.IsDir() {
				rel, _ := filepath.Rel(src, p)
				files = append(files, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		if err := copyFile(filepath.Join(src, f), filepath.Join(dst, f)); err != nil {
			if os.IsNotExist(err) {
				continue // deleted in the working tree
			}
			t.Fatal(err)
		}
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil || info.IsDir() {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
