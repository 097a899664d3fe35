// Package clitest holds the checks every binary's command line owes, run
// against the binary's own run function: -h lists its table of
// variables, -version names it, a stray argument is refused, and the
// README's configuration table lists that same table. What
// lifecycle.ParseArgs does beyond that is lifecycle's own test. Only
// *_test.go files import this package.
package clitest

import (
	"bytes"
	"context"
	"io"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/readme"
)

// Run is a binary's run(ctx, args, getenv, stdout).
type Run func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error

// Args runs name's run with -h, -version and a stray argument, with no
// variable set.
func Args(t *testing.T, name string, vars config.Vars, run Run) {
	t.Helper()
	help := []string{`^usage: ` + regexp.QuoteMeta(name) + ` \[-h\] \[-version\]`}
	for _, v := range vars {
		def := v.Default
		if def == "" {
			def = "-"
		}
		help = append(help, `(?m)^  `+regexp.QuoteMeta(v.Name)+` +`+regexp.QuoteMeta(def)+` +`+regexp.QuoteMeta(v.Help)+`$`)
	}
	testCases := []struct {
		Name    string
		Args    []string
		Want    []string
		WantErr string
	}{
		{Name: "-h lists every variable, its default and what it does", Args: []string{"-h"}, Want: help},
		{Name: "-version names the version and the commit", Args: []string{"-version"}, Want: []string{`^` + regexp.QuoteMeta(name) + ` dev \(commit \S+\)\n$`}},
		{Name: "an argument", Args: []string{"serve"}, WantErr: `unexpected arguments ["serve"]`},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), c.Args, func(string) string { return "" }, &out)
			if c.WantErr != "" {
				require.ErrorContains(t, err, c.WantErr)
				return
			}
			require.NoError(t, err)
			for _, w := range c.Want {
				require.Regexp(t, w, out.String())
			}
		})
	}
}

// READMETable checks that the README's configuration table lists every
// variable of name's table, with its default, and none it does not read.
// readmePath is the README from the test's package directory.
func READMETable(t *testing.T, readmePath, name string, vars config.Vars) {
	t.Helper()
	src, err := os.ReadFile(readmePath)
	require.NoError(t, err)
	rows, err := readme.Parse(src).ConfigTable("Configuration")
	require.NoError(t, err)
	require.NoError(t, readme.CheckConfig(rows, name, vars))
}
