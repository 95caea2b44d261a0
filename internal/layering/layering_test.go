package layering

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/bondkv/bondkv"

// allowed lists, for every package of the module (path relative to the module root, "." for the
// root package), the module packages its non-test files may import.
var allowed = map[string][]string{
	"internal/base":        {},
	"internal/layering":    {},
	"internal/rpc":         {"internal/base"},
	"internal/netsim":      {"internal/base"},
	"internal/rafttest":    {},
	"store":                {"internal/base"},
	"raftgroup":            {"store", "internal/base", "internal/rpc"},
	"ledger":               {"raftgroup", "store", "internal/base", "internal/rpc"},
	"shard":                {"ledger", "raftgroup", "store", "internal/base", "internal/rpc"},
	".":                    {"shard", "ledger", "raftgroup", "store", "internal/base", "internal/rpc", "internal/netsim"},
	"internal/testcluster": {".", "internal/base", "internal/netsim"},
	"actorstate":           {".", "internal/base"},
	"predict":              {"actorstate", ".", "internal/base"},
	// bench measures the product against baselines built from the layers below it (raw Pebble,
	// a bare Raft group), so it may reach down to them.
	"bench":       {"actorstate", "predict", ".", "internal/testcluster", "internal/netsim", "internal/base", "raftgroup", "store"},
	"cmd/kvbench": {"bench", ".", "internal/base"},
	// examples embed the public API only.
	"examples/cluster": {"."},
}

func TestImportGraphFollowsLayering(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	imports := map[string]map[string]bool{} // package → module packages it imports
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "examples") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		if imports[rel] == nil {
			imports[rel] = map[string]bool{}
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			switch {
			case p == module:
				imports[rel]["."] = true
			case strings.HasPrefix(p, module+"/"):
				imports[rel][strings.TrimPrefix(p, module+"/")] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var pkgs []string
	for p := range imports {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		ok, known := allowed[p]
		if !known {
			t.Errorf("package %s is not in the layering table (DESIGN.md §1): add it deliberately", p)
			continue
		}
		set := map[string]bool{}
		for _, a := range ok {
			set[a] = true
		}
		for imp := range imports[p] {
			if !set[imp] {
				t.Errorf("%s imports %s, which the layering does not allow", p, imp)
			}
		}
	}
	if len(imports["store"]) == 0 || !imports["raftgroup"]["store"] {
		t.Fatalf("import graph looks empty; is the module root right? %v", imports)
	}
}
