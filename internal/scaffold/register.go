package scaffold

import (
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strconv"
	"strings"
)

// RegisterFile is the path of the list of built-in types, relative to the
// repository root.
const RegisterFile = "internal/tasks/register.go"

// registerSource returns the source of register.go with the type's import
// and its `<pkg>.Type(),` line added to the declaration list in Register.
// It edits by the syntax tree: the list is the []registry.Declaration
// literal in func Register.
func registerSource(src []byte, importPath, pkg string) ([]byte, error) {
	manual := fmt.Sprintf("add the import %q and the line `%s.Type(),` to the list in Register by hand", importPath, pkg)
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, RegisterFile, src, parser.ParseComments)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w; %s", RegisterFile, err, manual)
	}
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == importPath {
			return nil, fmt.Errorf("%s already imports %s", RegisterFile, importPath)
		}
	}
	if len(f.Imports) == 0 {
		return nil, fmt.Errorf("%s has no imports; %s", RegisterFile, manual)
	}
	list := declarationList(f)
	if list == nil {
		return nil, fmt.Errorf("%s: found no []registry.Declaration{…} literal in func Register; %s", RegisterFile, manual)
	}

	// Insert the import after the last one of a sibling type package (or
	// after the last import), and the entry on its own line before the
	// list's closing brace. Edit from the end so offsets stay valid.
	prefix := importPath[:strings.LastIndex(importPath, "/")+1]
	after := f.Imports[len(f.Imports)-1]
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); strings.HasPrefix(p, prefix) {
			after = imp
		}
	}
	importAt := fset.Position(after.End()).Offset
	rbrace := fset.Position(list.Rbrace).Offset
	entryAt := strings.LastIndexByte(string(src[:rbrace]), '\n') + 1
	entry := "\t\t" + pkg + ".Type(),\n"
	if len(list.Elts) > 0 && fset.Position(list.Elts[len(list.Elts)-1].End()).Line == fset.Position(list.Rbrace).Line {
		entryAt, entry = rbrace, ",\n"+entry // the list closes on its last element's line
	}
	out := slices.Concat(src[:importAt], []byte("\n\t"+strconv.Quote(importPath)), src[importAt:entryAt], []byte(entry), src[entryAt:])
	formatted, err := format.Source(out)
	if err != nil {
		return nil, fmt.Errorf("formatting %s after the edit: %w; %s", RegisterFile, err, manual)
	}
	return formatted, nil
}

// declarationList finds the []registry.Declaration composite literal in
// func Register.
func declarationList(f *ast.File) *ast.CompositeLit {
	var found *ast.CompositeLit
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "Register" || fn.Body == nil {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok || found != nil {
				return found == nil
			}
			arr, ok := lit.Type.(*ast.ArrayType)
			if !ok || arr.Len != nil {
				return true
			}
			if sel, ok := arr.Elt.(*ast.SelectorExpr); ok && sel.Sel.Name == "Declaration" {
				found = lit
				return false
			}
			return true
		})
	}
	return found
}

// addToRegister edits root's register.go in place.
func addToRegister(path, importPath, pkg string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", RegisterFile, err)
	}
	out, err := registerSource(src, importPath, pkg)
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, info.Mode().Perm())
}
