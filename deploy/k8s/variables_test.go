package k8s_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestEveryVariableIsOneTheBinaryReads: a misspelt key in a ConfigMap or an
// env entry is silently ignored by the binary, so each one must be a
// variable that the binary's configuration code reads. Those are found in
// the source: the first argument of every config.Env lookup in cmd/<binary>
// and internal/config.
func TestEveryVariableIsOneTheBinaryReads(t *testing.T) {
	shared := readVariables(t, "../../internal/config")
	for _, dir := range cardwireOverlays {
		r := render(t, dir)
		for _, b := range binaries {
			t.Run(dir+"/"+b.Deployment, func(t *testing.T) {
				read := readVariables(t, "../../cmd/"+b.Deployment)
				for name := range shared {
					read[name] = true
				}
				read["GOMEMLIMIT"] = true // the Go runtime's
				c := r.Deployments[b.Deployment].Spec.Template.Spec.Containers[0]
				for name := range containerEnv(t, r, c) {
					if !read[name] {
						t.Errorf("%s is set, but %s never reads it", name, b.Deployment)
					}
				}
			})
		}
	}
}

// readVariables returns the variable names dir's non-test Go files look up
// through config.Env (String, Duration, Int, Bool, Secret, Secrets; the last
// two also read NAME_FILE).
func readVariables(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	names := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(fset, f, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			name, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			switch sel.Sel.Name {
			case "String", "Duration", "Int", "Bool":
				names[name] = true
			case "Secret", "Secrets":
				names[name], names[name+"_FILE"] = true, true
			}
			return true
		})
	}
	if !names["ADMIN_ADDR"] && !names["LOG_LEVEL"] {
		t.Fatalf("found no variables in %s (%v): the lookup pattern no longer matches the code", dir, names)
	}
	return names
}
