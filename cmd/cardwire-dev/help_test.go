package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHelpIsNoFailure: every command's -h prints its help and succeeds,
// and secret's is help, not a secret.
func TestHelpIsNoFailure(t *testing.T) {
	const secret = `whsec_[A-Za-z0-9+/]{32}`
	testCases := []struct {
		Name    string
		Args    []string
		Want    string // a regexp of stdout
		Not     string // a regexp stdout must not match
		WantErr string
	}{
		{Name: "send -h", Args: []string{"send", "-h"}},
		{Name: "register -h", Args: []string{"register", "-h"}},
		{Name: "tail -h", Args: []string{"tail", "-h"}},
		{Name: "demo -h", Args: []string{"demo", "-h"}},
		{Name: "workspaces -h", Args: []string{"workspaces", "-h"}},
		{Name: "secret -h", Args: []string{"secret", "-h"}, Want: `^usage: cardwire-dev secret\n`, Not: secret},
		{Name: "secret --help", Args: []string{"secret", "--help"}, Want: `^usage: cardwire-dev secret\n`, Not: secret},
		{Name: "secret", Args: []string{"secret"}, Want: `^` + secret + `=?\n$`},
		{Name: "secret with an argument", Args: []string{"secret", "x"}, WantErr: `secret takes no arguments, got ["x"]`},
		{Name: "an unknown flag is still an error", Args: []string{"send", "-nope"}, WantErr: "flag provided but not defined: -nope"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			var out strings.Builder
			err := run(t.Context(), c.Args, func(string) string { return "" }, &out)
			if c.WantErr != "" {
				require.ErrorContains(t, err, c.WantErr)
				return
			}
			require.NoError(t, err)
			if c.Want != "" {
				require.Regexp(t, c.Want, out.String())
			}
			if c.Not != "" {
				require.NotRegexp(t, c.Not, out.String())
			}
		})
	}
}
