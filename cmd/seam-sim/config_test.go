package main

import (
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/clitest"
	"github.com/cardwire/cardwire/internal/config"
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

func TestArgs(t *testing.T) { clitest.Args(t, "seam-sim", variables, run) }

// TestREADMEConfigurationTable: README's configuration table lists every
// variable of the simulator, with its default, and none it does not read.
func TestREADMEConfigurationTable(t *testing.T) {
	clitest.READMETable(t, "../../README.md", "seam-sim", variables)
}

// TestLogDurationsCarryTheirUnit: "encode_delay":"2s", not a bare 2000.
func TestLogDurationsCarryTheirUnit(t *testing.T) {
	_, logs, _ := start(t, map[string]string{"SEAM_SIM_ADDR": "127.0.0.1:0", "SEAM_WEBHOOK_SECRET": newSecret(t)})
	require.Equal(t, "2s", logs.Wait(t, "seam-sim started", "")["encode_delay"])
}
