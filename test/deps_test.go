package test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// packageImports maps the import path of every package under dir (non-test
// files) to its council.dev imports. dir is relative to the repository
// root; prefix is its import path.
func packageImports(t *testing.T, dir, prefix string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	root := filepath.Join("..", dir)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := prefix
		if rel != "." {
			pkg += "/" + filepath.ToSlash(rel)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "council.dev/") {
				out[pkg] = append(out[pkg], p)
			}
		}
		if _, ok := out[pkg]; !ok {
			out[pkg] = nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// within reports whether import path p is pkg or below it.
func within(p, pkg string) bool { return p == pkg || strings.HasPrefix(p, pkg+"/") }

// TestDependencyRules enforces the dependency rules of ARCHITECTURE.md on
// every non-test file: shared/council imports the standard library only
// (shared/council's own test says so too), and so does shared/redact, which
// adapters, host and functions may use; counciltest only the domain;
// events only the domain; adapters the domain and events, never each other
// (the NATS adapters share natserr, the classifier of NATS errors),
// the host or a function; the host no function; functions never each other.
func TestDependencyRules(t *testing.T) {
	type rule struct {
		dir, prefix string
		allowed     func(pkg, imp string) bool
	}
	adapterOf := func(pkg string) string {
		rest := strings.TrimPrefix(pkg, "council.dev/shared/adapters/")
		first, _, _ := strings.Cut(rest, "/")
		return "council.dev/shared/adapters/" + first
	}
	functionOf := func(pkg string) string {
		rest := strings.TrimPrefix(pkg, "council.dev/functions/")
		first, _, _ := strings.Cut(rest, "/")
		return "council.dev/functions/" + first
	}
	rules := []rule{
		{"shared/council", "council.dev/shared/council", func(_, imp string) bool { return false }},
		{"shared/redact", "council.dev/shared/redact", func(_, imp string) bool { return false }},
		{"shared/counciltest", "council.dev/shared/counciltest", func(_, imp string) bool {
			return imp == "council.dev/shared/council"
		}},
		{"events", "council.dev/events", func(_, imp string) bool {
			return imp == "council.dev/shared/council" || within(imp, "council.dev/events")
		}},
		{"shared/adapters", "council.dev/shared/adapters", func(pkg, imp string) bool {
			return imp == "council.dev/shared/council" || imp == "council.dev/shared/counciltest" ||
				imp == "council.dev/shared/redact" || within(imp, "council.dev/events") || within(imp, adapterOf(pkg)) ||
				// The one classifier of NATS errors, shared by the NATS adapters.
				(imp == "council.dev/shared/adapters/natserr" && (within(pkg, "council.dev/shared/adapters/natsjs") ||
					within(pkg, "council.dev/shared/adapters/legacy")))
		}},
		{"shared/host", "council.dev/shared/host", func(_, imp string) bool {
			return imp == "council.dev/shared/council" || imp == "council.dev/shared/redact" || within(imp, "council.dev/events") ||
				within(imp, "council.dev/shared/adapters") || within(imp, "council.dev/shared/host")
		}},
		{"functions", "council.dev/functions", func(pkg, imp string) bool {
			return imp == "council.dev/shared/council" || imp == "council.dev/shared/redact" || within(imp, "council.dev/events") ||
				within(imp, "council.dev/shared/adapters") || within(imp, "council.dev/shared/host") ||
				within(imp, functionOf(pkg))
		}},
	}
	checked := 0
	for _, r := range rules {
		for pkg, imps := range packageImports(t, r.dir, r.prefix) {
			checked++
			for _, imp := range imps {
				if !r.allowed(pkg, imp) {
					t.Errorf("%s imports %s, which ARCHITECTURE.md's dependency rules forbid", pkg, imp)
				}
			}
		}
	}
	if checked < 15 {
		t.Errorf("checked %d packages; the walk missed the tree", checked)
	}
}
