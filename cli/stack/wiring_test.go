package stack

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"testing"
)

// calls returns the package-qualified calls (pkg.Func) in the Go file path.
func calls(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if sel, ok := c.Fun.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok {
					out[id.Name+"."+sel.Sel.Name] = true
				}
			}
		}
		return true
	})
	return out
}

// TestFunctionsAreBuiltLikeTheImages: the stack and each function's command
// (the binary in the image) build the function with the same constructor,
// FromConfig, from a host.Config; neither calls the bare New, which would
// let their wiring drift apart.
func TestFunctionsAreBuiltLikeTheImages(t *testing.T) {
	root := filepath.Join("..", "..")
	stack := calls(t, "stack.go")
	if !stack["host.LoadConfig"] {
		t.Error("stack.go does not parse its configuration with host.LoadConfig")
	}
	for _, fn := range []string{"execute", "generate", "critique", "rayexecutor"} {
		cmd := calls(t, filepath.Join(root, "functions", fn, "cmd", fn, "main.go"))
		for name, c := range map[string]map[string]bool{"stack.go": stack, fn + "'s main.go": cmd} {
			if !c[fn+".FromConfig"] {
				t.Errorf("%s does not build %s with %s.FromConfig", name, fn, fn)
			}
			if c[fn+".New"] {
				t.Errorf("%s builds %s with %s.New instead of FromConfig", name, fn, fn)
			}
		}
	}
}
