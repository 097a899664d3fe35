package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/cardwire/cardwire/internal/seamsim"
	"github.com/cardwire/cardwire/internal/workspaces"
)

// devFile writes a development WORKSPACES_FILE with the workspaces command
// and returns its path and parsed configuration.
func devFile(t *testing.T) (string, *workspaces.Config) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "workspaces.json")
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"workspaces", "-o", path}, noEnv, &out))
	require.Contains(t, out.String(), "Hotel Aurora, Hotel Borealis")
	c, err := loadWorkspaces(envOf(map[string]string{"WORKSPACES_FILE": path}))
	require.NoError(t, err)
	return path, c
}

func noEnv(string) string { return "" }

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestWorkspacesCommand(t *testing.T) {
	path, c := devFile(t)
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the file holds secrets")

	require.Equal(t, []string{auroraID, borealisID}, c.IDs())
	aurora, _ := c.Workspace(auroraID)
	borealis, _ := c.Workspace(borealisID)
	require.Equal(t, "Hotel Aurora", aurora.Name)
	require.Equal(t, "Hotel Borealis", borealis.Name)
	require.True(t, strings.HasPrefix(aurora.SeamAPIKey.Reveal(), "seam_test_"))
	require.Empty(t, borealis.SeamAPIKey, "Borealis goes through the personal access token")
	creds, ok := c.Seam(borealisID)
	require.True(t, ok)
	require.True(t, strings.HasPrefix(creds.APIKey.Reveal(), "seam_at_"))
	require.Equal(t, borealisID, creds.Workspace)
	secrets := map[string]bool{}
	for _, w := range []*workspaces.Workspace{aurora, borealis} {
		require.Len(t, w.WebhookSecrets, 1)
		_, err := svix.NewWebhook(w.WebhookSecrets[0].Reveal())
		require.NoError(t, err)
		secrets[w.WebhookSecrets[0].Reveal()] = true
	}
	require.Len(t, secrets, 2, "each workspace has its own secret")

	testCases := []struct {
		Name    string
		Args    []string
		Env     map[string]string
		WantOut []string
		WantErr string
	}{
		{"an existing file is kept", []string{"workspaces", "-o", path}, nil, nil, "exists"},
		{"list", []string{"workspaces", "-list"}, map[string]string{"WORKSPACES_FILE": path},
			[]string{"Hotel Aurora    " + auroraID + "  Seam: its own API key", "Hotel Borealis  " + borealisID + "  Seam: the personal access token"}, ""},
		{"list needs the file", []string{"workspaces", "-list"}, nil, nil, "WORKSPACES_FILE"},
		{"stdout", []string{"workspaces"}, nil, []string{`"workspace_id": "` + borealisID + `"`, `"seam_personal_access_token": "seam_at_`}, ""},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), c.Args, envOf(c.Env), &out)
			if c.WantErr != "" {
				require.ErrorContains(t, err, c.WantErr)
				return
			}
			require.NoError(t, err)
			for _, s := range c.WantOut {
				require.Contains(t, out.String(), s)
			}
			if c.Args[len(c.Args)-1] == "-list" {
				require.NotContains(t, out.String(), aurora.SeamAPIKey.Reveal(), "no secret in the list")
				require.NotContains(t, out.String(), "whsec_")
			}
		})
	}

	before, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, run(t.Context(), []string{"workspaces", "-o", path, "-force"}, noEnv, io.Discard))
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotEqual(t, before, after, "-force writes fresh secrets")
}

// hooks is a webhook endpoint that records each POST with the workspaces
// whose secrets verify it.
type hooks struct {
	srv *httptest.Server
	got chan hook
}

type hook struct {
	workspace string   // the body's workspace_id
	verified  []string // the workspaces whose secret verifies the signature
}

func newHooks(t *testing.T, secrets map[string]string) *hooks {
	t.Helper()
	h := &hooks{got: make(chan hook, 8)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct {
			WorkspaceID string `json:"workspace_id"`
		}
		_ = json.Unmarshal(body, &ev)
		got := hook{workspace: ev.WorkspaceID}
		for _, ws := range []string{auroraID, borealisID, "single"} {
			if wh, err := svix.NewWebhook(secrets[ws]); err == nil && wh.Verify(body, r.Header) == nil {
				got.verified = append(got.verified, ws)
			}
		}
		h.got <- got
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func TestSendSignsWithTheWorkspaceSecret(t *testing.T) {
	path, c := devFile(t)
	secrets := map[string]string{"single": "whsec_c2VjcmV0c2VjcmV0c2VjcmV0"}
	for _, id := range c.IDs() {
		w, _ := c.Workspace(id)
		secrets[id] = w.WebhookSecrets[0].Reveal()
	}
	h := newHooks(t, secrets)
	file := map[string]string{"WORKSPACES_FILE": path}

	testCases := []struct {
		Name          string
		Workspace     string
		Env           map[string]string
		WantWorkspace string
		WantSecret    string // whose secret verifies the webhook
		WantErr       string
	}{
		{"the file's first workspace by default", "", file, auroraID, auroraID, ""},
		{"by name", "hotel borealis", file, borealisID, borealisID, ""},
		{"by id", borealisID, file, borealisID, borealisID, ""},
		{"not in the file", "Hotel Cygnus", file, "", "", `"Hotel Cygnus" is not in WORKSPACES_FILE, which has "Hotel Aurora" (` + auroraID},
		{"file and secret", "", map[string]string{"WORKSPACES_FILE": path, "SEAM_WEBHOOK_SECRET": secrets["single"]}, "", "", "set one of WORKSPACES_FILE and SEAM_WEBHOOK_SECRET"},
		{"missing file", "", map[string]string{"WORKSPACES_FILE": path + ".missing"}, "", "", "make run writes .data/workspaces.json"},
		{"single workspace", "", map[string]string{"SEAM_WEBHOOK_SECRET": secrets["single"]}, defaultWorkspaceID, "single", ""},
		{"single workspace, any id", "ws-other", map[string]string{"SEAM_WEBHOOK_SECRET": secrets["single"]}, "ws-other", "single", ""},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			args := []string{"send", "-url", h.srv.URL + "/webhooks/seam", "-workspace", c.Workspace, "-secret-file", filepath.Join(t.TempDir(), "none")}
			err := run(t.Context(), args, envOf(c.Env), io.Discard)
			if c.WantErr != "" {
				require.ErrorContains(t, err, c.WantErr)
				require.Empty(t, h.got, "nothing sent")
				return
			}
			require.NoError(t, err)
			require.Equal(t, hook{workspace: c.WantWorkspace, verified: []string{c.WantSecret}}, <-h.got)
		})
	}
}

func TestRegisterNamesTheWorkspace(t *testing.T) {
	path, _ := devFile(t)
	bodies := make(chan map[string]string, 4)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]string
		_ = json.NewDecoder(r.Body).Decode(&b)
		bodies <- b
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"status":"pending"}`))
	}))
	t.Cleanup(api.Close)

	testCases := []struct {
		Name          string
		Workspace     string
		Env           map[string]string
		WantWorkspace string
	}{
		{"the file's first", "", map[string]string{"WORKSPACES_FILE": path}, auroraID},
		{"by name", "Hotel Borealis", map[string]string{"WORKSPACES_FILE": path}, borealisID},
		{"without the file", "", nil, defaultWorkspaceID},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			args := []string{"register", "-url", api.URL + "/v1/encodings", "-credential", "card-1", "-workspace", c.Workspace}
			require.NoError(t, run(t.Context(), args, envOf(c.Env), io.Discard))
			b := <-bodies
			require.Equal(t, c.WantWorkspace, b["workspace_id"])
			require.Equal(t, "card-1", b["acs_credential_id"])
		})
	}
}

// The demo calls the simulator with each workspace's credentials from the
// file; a Multi built from the same file must take each call in that
// workspace: Aurora by its key, Borealis by the token and seam-workspace.
func TestDemoCredentialsReachEachWorkspace(t *testing.T) {
	path, c := devFile(t)
	o := seamsim.MultiOptions{}
	for _, id := range c.IDs() {
		w, _ := c.Workspace(id)
		o.Workspaces = append(o.Workspaces, seamsim.WorkspaceOptions{WorkspaceID: id, APIKey: w.SeamAPIKey.Reveal()})
	}
	creds, _ := c.Seam(borealisID)
	o.PersonalAccessToken = creds.APIKey.Reveal()
	m, err := seamsim.NewMulti(o)
	require.NoError(t, err)
	t.Cleanup(m.Close)
	sim := httptest.NewServer(m.Handler())
	t.Cleanup(sim.Close)

	targets, err := demoTargets(envOf(map[string]string{"WORKSPACES_FILE": path}), "", "", io.Discard)
	require.NoError(t, err)
	require.Len(t, targets, 2)
	for _, tg := range targets {
		require.NoError(t, postWith(t.Context(), sim.URL+seamsim.PathSimulateWillFail, tg.seam, map[string]string{"acs_encoder_id": "e1"}, nil), tg.label)
	}
	require.Equal(t, 1, m.Workspace(auroraID).CallsWith(seamsim.PathSimulateWillFail, seamsim.AuthAPIKey))
	require.Equal(t, 1, m.Workspace(borealisID).CallsWith(seamsim.PathSimulateWillFail, seamsim.AuthPAT))
	require.Zero(t, m.Unauthorized())

	only, err := demoTargets(envOf(map[string]string{"WORKSPACES_FILE": path}), "Hotel Borealis", "", io.Discard)
	require.NoError(t, err)
	require.Len(t, only, 1)
	require.Equal(t, borealisID, only[0].workspaceID)
}
