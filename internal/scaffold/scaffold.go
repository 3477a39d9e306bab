// Package scaffold writes a new task type: its folder under
// internal/tasks (fields and update structs, processor, scheduler stub,
// migrations for SQLite and PostgreSQL, tests) and its line in
// internal/tasks/register.go. The type it writes builds, migrates, passes
// its own tests and the conformance suite as written. `compute
// new-task-type` is its command line.
package scaffold

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"go/types"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store/schema"
	"github.com/computeserver/compute/internal/store/sqlstore"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.ParseFS(templateFS, "templates/*.tmpl"))

// Options describe the type to write.
type Options struct {
	// Root is the repository root (the folder with go.mod).
	Root string
	// Name is the task type name, snake_case (word_count).
	Name string
	// Fields are the type's fields; none means one required string
	// field, "input".
	Fields []Field
	// Registered lists the type names already registered (by the
	// binary that runs the generator); they are refused.
	Registered []string
	// Now dates the migrations (default time.Now()).
	Now time.Time
}

// Result says what Generate wrote.
type Result struct {
	// Package is the Go package name (the name without underscores).
	Package string
	// Dir is the type's folder, relative to the root.
	Dir string
	// Files are the files written, relative to the root, register.go last.
	Files []string
	// Version is the migrations' version.
	Version int64
}

// DefaultField is the field of a type generated without --field.
var DefaultField = Field{Name: "input", Type: TypeString, Min: "1", Max: "10000"}

// PackageName returns the Go package (and folder) name of a type:
// image_adjuster → imageadjuster.
func PackageName(typeName string) string { return strings.ReplaceAll(typeName, "_", "") }

// Check validates the options without writing anything: the name (a valid,
// unreserved, unregistered type name whose package name is a usable
// identifier and whose folder does not exist) and the fields.
func Check(opts Options) error {
	_, err := plan(opts)
	return err
}

// Generate writes the type's folder and registers it in register.go. It
// writes nothing when a check fails, and removes what it wrote when a
// later step fails.
func Generate(opts Options) (*Result, error) {
	p, err := plan(opts)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(opts.Root, p.res.Dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", p.res.Dir, err)
	}
	undo := func(err error) (*Result, error) {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	order := slices.SortedFunc(maps.Keys(p.files), func(a, b string) int {
		// Go files first, then the migrations.
		am, bm := strings.Contains(a, "/migrations/"), strings.Contains(b, "/migrations/")
		if am != bm {
			if am {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	for _, rel := range order {
		path := filepath.Join(opts.Root, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return undo(err)
		}
		if err := os.WriteFile(path, p.files[rel], 0o644); err != nil {
			return undo(fmt.Errorf("writing %s: %w", rel, err))
		}
		p.res.Files = append(p.res.Files, rel)
	}
	if err := addToRegister(filepath.Join(opts.Root, RegisterFile), p.importPath, p.res.Package); err != nil {
		return undo(fmt.Errorf("registering the type: %w", err))
	}
	p.res.Files = append(p.res.Files, RegisterFile)
	return &p.res, nil
}

// planned is a checked, rendered type, not yet written.
type planned struct {
	res        Result
	importPath string
	files      map[string][]byte // by path relative to the root
}

func plan(opts Options) (*planned, error) {
	if err := registry.ValidateName(opts.Name); err != nil {
		return nil, err
	}
	pkg := PackageName(opts.Name)
	switch {
	case token.IsKeyword(pkg):
		return nil, fmt.Errorf("task type name %q: its package name %q is a Go keyword; choose another name", opts.Name, pkg)
	case types.Universe.Lookup(pkg) != nil:
		return nil, fmt.Errorf("task type name %q: its package name %q is a predeclared Go identifier; choose another name", opts.Name, pkg)
	case pkg == "main" || pkg == "tasks":
		return nil, fmt.Errorf("task type name %q: %q cannot be the package of a task type; choose another name", opts.Name, pkg)
	case slices.Contains(opts.Registered, opts.Name):
		return nil, fmt.Errorf("task type %q is already registered", opts.Name)
	}
	if opts.Root == "" {
		return nil, errors.New("no repository root")
	}
	module, err := ModulePath(opts.Root)
	if err != nil {
		return nil, err
	}
	rel := filepath.ToSlash(filepath.Join("internal", "tasks", pkg))
	if _, err := os.Stat(filepath.Join(opts.Root, rel)); err == nil {
		return nil, fmt.Errorf("%s already exists: task type %q (or one whose name differs only in underscores) exists; choose another name", rel, opts.Name)
	}
	if owner, err := declaredElsewhere(opts.Root, opts.Name); err != nil {
		return nil, err
	} else if owner != "" {
		return nil, fmt.Errorf("task type %q is already declared in %s", opts.Name, owner)
	}
	fields, err := checkFields(opts.Fields)
	if err != nil {
		return nil, err
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	version, err := NextVersion(opts.Root, now)
	if err != nil {
		return nil, err
	}

	p := &planned{
		res:        Result{Package: pkg, Dir: rel, Version: version},
		importPath: module + "/" + rel,
		files:      map[string][]byte{},
	}
	d := newTemplateData(opts.Name, pkg, module, fields)
	for tmpl, file := range map[string]string{
		"type.go.tmpl": pkg + ".go", "processor.go.tmpl": "processor.go", "scheduler.go.tmpl": "scheduler.go",
		"type_test.go.tmpl": pkg + "_test.go",
	} {
		src, err := render(tmpl, d)
		if err != nil {
			return nil, err
		}
		p.files[rel+"/"+file] = src
	}
	if err := checkIdentifiers(pkg, p.files, opts.Root); err != nil {
		return nil, err
	}
	specs := make([]schema.ColumnSpec, len(fields))
	for i, f := range fields {
		specs[i] = f.spec()
	}
	for _, dialect := range []string{sqlstore.DialectSQLite, sqlstore.DialectPostgres} {
		sql, err := schema.CreateTableMigration(dialect, opts.Name+"_tasks", specs)
		if err != nil {
			return nil, err
		}
		p.files[fmt.Sprintf("%s/migrations/%s/%d_%s.sql", rel, dialect, version, opts.Name)] = []byte(sql)
	}
	return p, nil
}

// checkFields validates the fields together (each was validated when
// parsed) and supplies the default field.
func checkFields(fields []Field) ([]Field, error) {
	if len(fields) == 0 {
		return []Field{DefaultField}, nil
	}
	names, goNames := map[string]bool{}, map[string]string{}
	inputs := 0
	for _, f := range fields {
		if err := f.validate(); err != nil {
			return nil, err
		}
		if names[f.Name] {
			return nil, f.fail("declared twice")
		}
		if other, dup := goNames[f.GoName()]; dup {
			return nil, f.fail("its Go name %s is also the Go name of field %q", f.GoName(), other)
		}
		names[f.Name], goNames[f.GoName()] = true, f.Name
		if !f.Output {
			inputs++
		}
	}
	if inputs == 0 {
		return nil, errors.New("every field is an output: a task type needs at least one input field")
	}
	return fields, nil
}

var nameDecl = func(name string) *regexp.Regexp {
	return regexp.MustCompile(`\bName\s*(=|:)\s*"` + regexp.QuoteMeta(name) + `"`)
}

// declaredElsewhere finds a type package under internal/tasks that
// already declares the name (the registry of the running binary may be
// older than the repository).
func declaredElsewhere(root, name string) (string, error) {
	files, err := filepath.Glob(filepath.Join(root, "internal", "tasks", "*", "*.go"))
	if err != nil {
		return "", err
	}
	re := nameDecl(name)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if re.Match(src) {
			rel, _ := filepath.Rel(root, f)
			return filepath.ToSlash(rel), nil
		}
	}
	return "", nil
}

// checkIdentifiers refuses a package name that would clash, as an
// identifier, with an import or a top-level name in the generated test
// file (which imports the package by name) or with an import of
// register.go.
func checkIdentifiers(pkg string, files map[string][]byte, root string) error {
	fset := token.NewFileSet()
	clash := func(file string, f *ast.File) error {
		for _, imp := range f.Imports {
			name := strings.Trim(imp.Path.Value, `"`)
			name = name[strings.LastIndex(name, "/")+1:]
			if imp.Name != nil {
				name = imp.Name.Name
			}
			if name == pkg && !strings.HasSuffix(strings.Trim(imp.Path.Value, `"`), "/tasks/"+pkg) {
				return fmt.Errorf("the package name %q would clash with the import %s in %s; choose another name", pkg, imp.Path.Value, file)
			}
		}
		return nil
	}
	for rel, src := range files {
		f, err := parser.ParseFile(fset, rel, src, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("generated %s does not parse: %w", rel, err)
		}
		if err := clash(filepath.Base(rel), f); err != nil {
			return err
		}
		if strings.HasSuffix(rel, "_test.go") && slices.Contains(topLevelNames(f), pkg) {
			return fmt.Errorf("the package name %q would clash with %s's own %s; choose another name", pkg, filepath.Base(rel), pkg)
		}
	}
	reg, err := parser.ParseFile(fset, RegisterFile, mustRead(filepath.Join(root, RegisterFile)), parser.ImportsOnly)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", RegisterFile, err)
	}
	return clash(RegisterFile, reg)
}

// topLevelNames lists the functions, types, variables and constants a
// file declares.
func topLevelNames(f *ast.File) []string {
	var names []string
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil {
				names = append(names, d.Name.Name)
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					names = append(names, s.Name.Name)
				case *ast.ValueSpec:
					for _, n := range s.Names {
						names = append(names, n.Name)
					}
				}
			}
		}
	}
	return names
}

func mustRead(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// templateData is what the templates see.
type templateData struct {
	Name, Package, Module, Title, Description string
	Fields                                    []fieldData
	Inputs                                    []fieldData
	SuccessBody, FailureBody                  string
	TestNeedsTime, TestNeedsPtr               bool
}

type fieldData struct {
	Field
	GoSample string
}

func newTemplateData(name, pkg, module string, fields []Field) templateData {
	words := strings.ReplaceAll(name, "_", " ")
	d := templateData{
		Name: name, Package: pkg, Module: module,
		Title:       strings.ToUpper(words[:1]) + words[1:],
		Description: "Runs " + name + " tasks.",
	}
	var body []string
	for _, f := range fields {
		jsonLit, goLit := f.sample()
		fd := fieldData{Field: f, GoSample: goLit}
		d.Fields = append(d.Fields, fd)
		d.TestNeedsTime = d.TestNeedsTime || f.Type == TypeTime
		d.TestNeedsPtr = d.TestNeedsPtr || f.pointer()
		if f.Output {
			continue
		}
		d.Inputs = append(d.Inputs, fd)
		body = append(body, fmt.Sprintf("%q: %s,", f.Name, jsonLit))
	}
	d.SuccessBody = "map[string]any{\n" + strings.Join(body, "\n") + "\n}"
	d.FailureBody = "map[string]any{\n" + strings.Join(append(body, `"provider_type": ProviderRemote,`), "\n") + "\n}"
	return d
}

func render(name string, d templateData) ([]byte, error) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, d); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", name, err)
	}
	out, err := format.Source(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("formatting %s: %w\n%s", name, err, buf.Bytes())
	}
	return out, nil
}
