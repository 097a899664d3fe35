package workspaces_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/promtest"
	"github.com/cardwire/cardwire/internal/workspaces"
)

func parseFile(t *testing.T, path string) *workspaces.Config {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	c, err := workspaces.Parse(data, filepath.Dir(path), os.ReadFile)
	require.NoError(t, err)
	return c
}

// The golden file: secrets inline and from files, a key and a PAT, a
// plain token and a hashed one.
func TestParseGolden(t *testing.T) {
	c := parseFile(t, "testdata/workspaces.yaml")
	require.Equal(t, []string{"ws-aurora", "ws-borealis"}, c.IDs())
	a, ok := c.Workspace("ws-aurora")
	require.True(t, ok)
	require.Equal(t, "Hotel Aurora", a.Label())
	require.Len(t, a.WebhookSecrets, 2)
	b, _ := c.Workspace("ws-borealis")
	require.Equal(t, "whsec_Z2hpamtsbW5vcHFyc3R1dg==", b.WebhookSecrets[0].Reveal())
	_, ok = c.Workspace("ws-other")
	require.False(t, ok, "only configured workspaces")

	cred, ok := c.Seam("ws-aurora")
	require.True(t, ok)
	require.Equal(t, workspaces.Credentials{APIKey: "seam_test_aurora"}, cred, "its own key, no seam-workspace header")
	cred, ok = c.Seam("ws-borealis")
	require.True(t, ok)
	require.Equal(t, workspaces.Credentials{APIKey: "seam_at_pat_for_all", Workspace: "ws-borealis"}, cred, "the PAT, naming the workspace")
	_, ok = c.Seam("ws-other")
	require.False(t, ok)

	for _, tc := range []struct {
		name, token string
		ok          bool
		reaches     []string
		all         bool
	}{
		{"plain token", "aurora-desk-token-0001", true, []string{"ws-aurora"}, false},
		{"hashed token", "operators-token-0000001", true, []string{"ws-aurora", "ws-borealis"}, true},
		{"unknown token", "aurora-desk-token-0002", false, nil, false},
		{"the hash itself is no token", "ec3184689a7b3854a00884f31167db4e0e02c87e5e989d7b6ed61797aabbc27b", false, nil, false},
		{"no token", "", false, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := c.Authorize(tc.token)
			require.Equal(t, tc.ok, ok)
			if !ok {
				return
			}
			require.Equal(t, tc.all, s.All())
			require.Equal(t, tc.reaches, c.Reachable(s))
			require.Equal(t, !tc.all, !s.Reaches("ws-borealis"))
		})
	}
	require.False(t, c.Open())
}

// Strict validation names the entry and never a secret.
func TestParseRefuses(t *testing.T) {
	const sec = `"whsec_QUJDREVGR0hJSktMTU5PUA=="`
	for _, tc := range []struct {
		name, file, want string
	}{
		{"not YAML", "workspaces: [", "yaml"},
		{"unknown field", `{"workspaces":[{"workspace_id":"a","webhook_secrets":[` + sec + `],"secret":"x"}]}`, `unknown field "secret"`},
		{"unknown top-level field", `{"workspaces":[{"workspace_id":"a","webhook_secrets":[` + sec + `]}],"tokens":[]}`, `unknown field "tokens"`},
		{"duplicate field", "workspaces:\n  - workspace_id: a\n    workspace_id: b\n    webhook_secrets: [" + sec + "]\n", "workspace_id"},
		{"no workspaces", `{"workspaces":[]}`, "at least one workspace"},
		{"duplicate workspace", `{"workspaces":[{"workspace_id":"a","webhook_secrets":[` + sec + `]},{"workspace_id":"a","webhook_secrets":[` + sec + `]}]}`, "workspaces[1] (a): workspace_id is configured twice"},
		{"bad workspace id", `{"workspaces":[{"workspace_id":"a.b","webhook_secrets":[` + sec + `]}]}`, "workspaces[0] (a.b): workspace_id must be"},
		{"empty secret list", `{"workspaces":[{"workspace_id":"a","webhook_secrets":[]}]}`, "workspaces[0] (a): webhook_secrets is empty"},
		{"empty secret", `{"workspaces":[{"workspace_id":"a","webhook_secrets":[""]}]}`, "webhook_secrets[0] is empty"},
		{"secret and its file", `{"workspaces":[{"workspace_id":"a","webhook_secrets":[` + sec + `],"webhook_secrets_file":"x"}]}`, "at most one of webhook_secrets and webhook_secrets_file"},
		{"missing secret file", `{"workspaces":[{"workspace_id":"a","webhook_secrets_file":"nope"}]}`, "webhook_secrets_file"},
		{"token in two entries", `{"workspaces":[{"workspace_id":"a","webhook_secrets":[` + sec + `]}],"api_tokens":[{"token":"token-of-sixteen-chars","workspaces":["a"]},{"name":"ops","token":"token-of-sixteen-chars","workspaces":["*"]}]}`, "api_tokens[1] (ops): the same token is also api_tokens[0]"},
		{"token and its hash", `{"workspaces":[{"workspace_id":"a","webhook_secrets":[` + sec + `]}],"api_tokens":[{"token":"token-of-sixteen-chars","token_sha256":"ab","workspaces":["a"]}]}`, "exactly one of token"},
		{"bad hash", `{"workspaces":[{"workspace_id":"a","webhook_secrets":[` + sec + `]}],"api_tokens":[{"token_sha256":"EC3184689A7B3854A00884F31167DB4E0E02C87E5E989D7B6ED61797AABBC27B","workspaces":["a"]}]}`, "64 lowercase hex"},
		{"short token", `{"workspaces":[{"workspace_id":"a","webhook_secrets":[` + sec + `]}],"api_tokens":[{"token":"short","workspaces":["a"]}]}`, "at least 16"},
		{"token reaching nothing", `{"workspaces":[{"workspace_id":"a","webhook_secrets":[` + sec + `]}],"api_tokens":[{"token":"token-of-sixteen-chars","workspaces":[]}]}`, "workspaces is empty"},
		{"token reaching an unknown workspace", `{"workspaces":[{"workspace_id":"a","webhook_secrets":[` + sec + `]}],"api_tokens":[{"token":"token-of-sixteen-chars","workspaces":["b"]}]}`, `workspace "b" is not configured`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := workspaces.Parse([]byte(tc.file), t.TempDir(), os.ReadFile)
			require.ErrorIs(t, err, workspaces.ErrInvalid)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "QUJDREVG")
			require.NotContains(t, err.Error(), "token-of-sixteen-chars")
		})
	}
}

// The single-workspace variables: every workspace is served with the one
// configuration; no token means an open API.
func TestSingle(t *testing.T) {
	c := workspaces.Single(workspaces.SingleOptions{WorkspaceID: "ws1", SeamAPIKey: "seam_at_pat", APIToken: "single-api-token-01"})
	require.True(t, c.IsSingle())
	cred, ok := c.Seam("any-workspace")
	require.True(t, ok)
	require.Equal(t, workspaces.Credentials{APIKey: "seam_at_pat", Workspace: "ws1"}, cred, "a PAT names SEAM_WORKSPACE_ID")
	s, ok := c.Authorize("single-api-token-01")
	require.True(t, ok)
	require.True(t, s.Reaches("any-workspace"))
	_, ok = c.Authorize("single-api-token-02")
	require.False(t, ok)

	open := workspaces.Single(workspaces.SingleOptions{SeamAPIKey: "seam_test_key"})
	require.True(t, open.Open())
	_, ok = open.Authorize("")
	require.True(t, ok)
	cred, _ = open.Seam("ws9")
	require.Equal(t, workspaces.Credentials{APIKey: "seam_test_key"}, cred)
}

// A reload takes a new workspace, a rotated secret and a revoked token; a
// broken file keeps the last good configuration, logged and counted once.
func TestSourceReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "workspaces.yaml")
	write := func(s string) { require.NoError(t, os.WriteFile(path, []byte(s), 0o600)) }
	const secA, secA2, secB = "whsec_QUJDREVGR0hJSktMTU5PUA==", "whsec_UVJTVFVWV1hZWmFiY2RlZg==", "whsec_Z2hpamtsbW5vcHFyc3R1dg=="
	write(`{"workspaces":[{"workspace_id":"a","name":"Aurora","webhook_secrets":["` + secA + `"]}],
		"api_tokens":[{"name":"desk","token":"desk-token-0000001","workspaces":["a"]}]}`)
	var logs strings.Builder
	reg := prometheus.NewRegistry()
	var applied []int
	src, err := workspaces.Open(workspaces.SourceOptions{Path: path, Interval: time.Hour, Registerer: reg, Log: zerolog.New(&logs),
		Apply: func(c *workspaces.Config) error {
			applied = append(applied, len(c.IDs()))
			if len(c.IDs()) > 2 {
				return errors.New("more than two workspaces")
			}
			return nil
		}})
	require.NoError(t, err)
	require.Equal(t, []int{1}, applied)

	changed, err := src.Reload()
	require.NoError(t, err)
	require.False(t, changed, "the same file changes nothing")

	write(`{"workspaces":[{"workspace_id":"a","name":"Aurora","webhook_secrets":["` + secA2 + `"]},
		{"workspace_id":"b","webhook_secrets":["` + secB + `"]}],
		"api_tokens":[{"name":"ops","token":"ops-token-00000001","workspaces":["*"]}]}`)
	changed, err = src.Reload()
	require.NoError(t, err)
	require.True(t, changed)
	c := src.Current()
	require.Equal(t, []string{"a", "b"}, c.IDs())
	a, _ := c.Workspace("a")
	require.Equal(t, secA2, a.WebhookSecrets[0].Reveal())
	_, ok := c.Authorize("desk-token-0000001")
	require.False(t, ok, "revoked")
	_, ok = c.Authorize("ops-token-00000001")
	require.True(t, ok)
	for _, want := range []string{"workspace added: b (b)", "webhook secrets changed: Aurora (a)", "API token revoked: desk", "API token added: ops"} {
		require.Contains(t, logs.String(), want)
	}

	// Broken: the last good configuration stays, logged and counted once
	// however often it is read.
	write(`{"workspaces":[{"workspace_id":"a","webhook_secrets":[]}]}`)
	for range 3 {
		changed, err = src.Reload()
		require.ErrorIs(t, err, workspaces.ErrInvalid)
		require.False(t, changed)
	}
	require.Same(t, c, src.Current())
	require.Equal(t, 1.0, metric(t, reg, "cardwire_config_reload_errors_total"))
	require.Equal(t, 0.0, metric(t, reg, "cardwire_config_last_reload_successful"))
	require.Equal(t, 1.0, metric(t, reg, "cardwire_config_reloads_total"))
	require.Equal(t, 1, strings.Count(logs.String(), "WORKSPACES_FILE not reloaded"))

	// Refused by Apply: the same.
	write(`{"workspaces":[{"workspace_id":"a","webhook_secrets":["` + secA + `"]},{"workspace_id":"b","webhook_secrets":["` + secB + `"]},{"workspace_id":"c","webhook_secrets":["` + secB + `"]}]}`)
	_, err = src.Reload()
	require.ErrorContains(t, err, "more than two workspaces")
	require.Same(t, c, src.Current())
	require.Equal(t, 2.0, metric(t, reg, "cardwire_config_reload_errors_total"))

	// Fixed: taken, and the gauge says so.
	write(`{"workspaces":[{"workspace_id":"a","webhook_secrets":["` + secA + `"]}]}`)
	changed, err = src.Reload()
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, 1.0, metric(t, reg, "cardwire_config_last_reload_successful"))
	require.True(t, src.Current().Open(), "no api_tokens: the caller decides whether that may be")
	_, ok = src.Current().Authorize("")
	require.True(t, ok)
	for _, s := range []string{secA, secA2, secB, "desk-token-0000001", "ops-token-00000001"} {
		require.NotContains(t, logs.String(), s, "no secret in a log line")
	}
}

// A file that does not validate at start is an error naming the entry.
func TestOpenRefusesABrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"workspaces":[{"workspace_id":"a"}]}`), 0o600))
	_, err := workspaces.Open(workspaces.SourceOptions{Path: path, Interval: time.Second, Registerer: prometheus.NewRegistry()})
	require.ErrorContains(t, err, "workspaces[0] (a): webhook_secrets is empty")
	_, err = workspaces.Open(workspaces.SourceOptions{Path: filepath.Join(t.TempDir(), "missing"), Interval: time.Second, Registerer: prometheus.NewRegistry()})
	require.ErrorIs(t, err, workspaces.ErrInvalid)
}

func metric(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := promtest.Gather(g)
	require.NoError(t, err)
	return mfs.Value(name)
}

// A key in the wrong field would authorize requests for the wrong
// workspace: refused.
func TestParseRefusesCredentialsInTheWrongField(t *testing.T) {
	const sec = `"whsec_QUJDREVGR0hJSktMTU5PUA=="`
	for name, file := range map[string]string{
		"PAT as a workspace key": `{"workspaces":[{"workspace_id":"a","webhook_secrets":[` + sec + `],"seam_api_key":"seam_at_1234"}]}`,
		"API key as the PAT":     `{"workspaces":[{"workspace_id":"a","webhook_secrets":[` + sec + `]}],"seam_personal_access_token":"seam_test_1234"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := workspaces.Parse([]byte(file), t.TempDir(), os.ReadFile)
			require.ErrorIs(t, err, workspaces.ErrInvalid)
			require.NotContains(t, err.Error(), "1234")
		})
	}
}
