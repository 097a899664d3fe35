package main

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/readme"
)

// TestVariablesAreWhatLoadConfigReads: the table -h prints and the README
// is held to is the list of variables loadConfig (and the logger) read,
// with the defaults they use.
func TestVariablesAreWhatLoadConfigReads(t *testing.T) {
	testCases := []struct {
		Name string
		Env  map[string]string
		// All: every variable of the table is read.
		All bool
	}{
		{"nothing set", nil, true},
		{"secret from a file", map[string]string{"SEAM_WEBHOOK_SECRET_FILE": "/run/secrets/webhook-secret"}, true},
		// The file replaces the single-workspace variables: they are not read.
		{"workspaces file", map[string]string{"WORKSPACES_FILE": "/etc/cardwire/workspaces.yaml"}, false},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			env := &config.Env{
				Getenv:   func(k string) string { return c.Env[k] },
				ReadFile: func(string) ([]byte, error) { return []byte("whsec_c2VjcmV0"), nil },
			}
			env.Logger(io.Discard)
			loadConfig(env)
			require.NoError(t, env.Err())
			require.NoError(t, variables.Check(env.Reads(), c.All))
		})
	}
}

func TestArgs(t *testing.T) {
	var help []string
	for _, v := range variables {
		def := v.Default
		if def == "" {
			def = "-"
		}
		help = append(help, `(?m)^  `+regexp.QuoteMeta(v.Name)+` +`+regexp.QuoteMeta(def)+` +`+regexp.QuoteMeta(v.Help)+`$`)
	}
	testCases := []struct {
		Name string
		Args []string
		Want []string
	}{
		{"-h lists every variable, its default and what it does", []string{"-h"}, append([]string{`^usage: seam-sim \[-h\] \[-version\]`}, help...)},
		{"-version names the version and the commit", []string{"-version"}, []string{`^seam-sim dev \(commit \S+\)\n$`}},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, run(t.Context(), c.Args, func(string) string { return "" }, &out))
			for _, w := range c.Want {
				require.Regexp(t, w, out.String())
			}
		})
	}
}

// TestREADMEConfigurationTable: README's configuration table lists every
// variable of the simulator, with its default, and none it does not read.
func TestREADMEConfigurationTable(t *testing.T) {
	src, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	rows, err := readme.Parse(src).ConfigTable("Configuration")
	require.NoError(t, err)
	require.NoError(t, readme.CheckConfig(rows, "seam-sim", variables))
}

// TestLogDurationsCarryTheirUnit: "encode_delay":"2s", not a bare 2000.
func TestLogDurationsCarryTheirUnit(t *testing.T) {
	_, logs, _ := start(t, map[string]string{"SEAM_SIM_ADDR": "127.0.0.1:0", "SEAM_WEBHOOK_SECRET": newSecret(t)})
	require.Equal(t, "2s", logs.Wait(t, "seam-sim started", "")["encode_delay"])
}
