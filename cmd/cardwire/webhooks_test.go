package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/cardwire/cardwire/internal/seamsim"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/workspaces"
)

const hookURL = "https://hooks.example.com/webhooks/seam"

type hookJSON struct {
	WebhookID  string   `json:"webhook_id"`
	URL        string   `json:"url"`
	EventTypes []string `json:"event_types"`
	Secret     string   `json:"secret"`
}

func listHooks(t *testing.T, env map[string]string) []hookJSON {
	t.Helper()
	var got struct {
		Webhooks []hookJSON `json:"webhooks"`
	}
	raw := cliJSON(t, env, &got, "webhooks", "list")
	require.NotContains(t, raw, "secret", "a list never shows secrets")
	return got.Webhooks
}

// The webhook's life: register (once per URL), list, rotate (a second
// webhook, then --finish deletes the old one), delete.
func TestWebhooks(t *testing.T) {
	sim, env := newSim(t, seamsim.Options{})

	require.Contains(t, cliOK(t, env, "webhooks", "list"), "no webhooks")

	out := cliOK(t, env, "webhooks", "register", "--url", hookURL)
	hooks := listHooks(t, env)
	require.Len(t, hooks, 1)
	first := hooks[0]
	require.Equal(t, hookURL, first.URL)
	require.Equal(t, streams.SubscribedEventTypes(), first.EventTypes, "by default the types cardwire acts on")
	require.Equal(t, 1, sim.Calls("/webhooks/create"))
	secret := field(t, out, "secret")
	_, err := svix.NewWebhook(secret)
	require.NoError(t, err, "the secret is printed: %s", out)
	require.Contains(t, out, "webhook_id   "+first.WebhookID)
	require.Contains(t, out, "SEAM_WEBHOOK_SECRET")

	_, err = runCLI(t, env, "webhooks", "register", "--url", hookURL)
	require.ErrorContains(t, err, "a webhook for "+hookURL+" already exists ("+first.WebhookID+"): use webhooks rotate")
	require.Equal(t, 1, sim.Calls("/webhooks/create"), "a duplicate is refused before Seam is asked")

	// JSON, flags after the command or before it, all event types.
	var reg struct {
		WorkspaceID string   `json:"workspace_id"`
		Webhook     hookJSON `json:"webhook"`
	}
	cliJSON(t, env, &reg, "--workspace", ws, "webhooks", "register", "--url", "https://other.example.com/webhooks/seam", "--event-types", "*")
	require.Equal(t, ws, reg.WorkspaceID)
	require.Equal(t, []string{"*"}, reg.Webhook.EventTypes)
	require.True(t, strings.HasPrefix(reg.Webhook.Secret, "whsec_"))
	require.Len(t, listHooks(t, env), 2)
	require.Contains(t, cliOK(t, env, "webhooks", "list"), "WEBHOOK_ID")

	// Rotation: a second webhook for the URL, with the old one's types.
	var rot struct {
		Webhook      hookJSON `json:"webhook"`
		OldWebhookID string   `json:"old_webhook_id"`
		Steps        []string `json:"steps"`
	}
	cliJSON(t, env, &rot, "webhooks", "rotate", "--url", hookURL)
	require.Equal(t, first.WebhookID, rot.OldWebhookID)
	require.Equal(t, first.EventTypes, rot.Webhook.EventTypes)
	require.NotEqual(t, secret, rot.Webhook.Secret)
	require.Contains(t, strings.Join(rot.Steps, "\n"), "cardwire webhooks rotate --finish --old "+first.WebhookID)
	_, err = runCLI(t, env, "webhooks", "rotate", "--url", hookURL)
	require.ErrorContains(t, err, "a rotation is in progress")

	finish := cliOK(t, env, "webhooks", "rotate", "--finish", "--old", first.WebhookID)
	require.Contains(t, finish, "deleted the old webhook "+first.WebhookID+"; "+rot.Webhook.WebhookID+" now delivers")
	for _, h := range listHooks(t, env) {
		require.NotEqual(t, first.WebhookID, h.WebhookID)
	}
	_, err = runCLI(t, env, "webhooks", "rotate", "--finish", "--old", rot.Webhook.WebhookID)
	require.ErrorContains(t, err, "is the only one for "+hookURL+": deleting it would stop the deliveries")

	rotText := cliOK(t, env, "webhooks", "rotate", "--url", hookURL)
	require.Contains(t, rotText, "1. add the new secret to SEAM_WEBHOOK_SECRET")
	require.Contains(t, rotText, "3. cardwire webhooks rotate --finish --old "+rot.Webhook.WebhookID)
	require.Contains(t, cliOK(t, env, "webhooks", "list"), hookURL+" has more than one webhook: a rotation in progress?")

	var del map[string]string
	cliJSON(t, env, &del, "webhooks", "delete", reg.Webhook.WebhookID)
	require.Equal(t, map[string]string{"deleted": reg.Webhook.WebhookID}, del)
	_, err = runCLI(t, env, "webhooks", "delete", reg.Webhook.WebhookID)
	require.ErrorContains(t, err, "no webhook "+reg.Webhook.WebhookID+" in workspace "+ws)
}

// field returns the value of a "name  value" line.
func field(t *testing.T, out, name string) string {
	t.Helper()
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			return f[1]
		}
	}
	t.Fatalf("no %s in\n%s", name, out)
	return ""
}

// WORKSPACES_FILE: --workspace picks a workspace by name; one reached
// through the personal access token works too; the printed entry is the
// file's shape, with the old and new secret during a rotation.
func TestWebhooksWithWorkspacesFile(t *testing.T) {
	const pat = "seam_at_cli"
	multi, err := seamsim.NewMulti(seamsim.MultiOptions{
		PersonalAccessToken: pat, Log: zerolog.Nop(),
		Workspaces: []seamsim.WorkspaceOptions{{WorkspaceID: "ws-a", APIKey: "seam_a"}, {WorkspaceID: "ws-b"}},
	})
	require.NoError(t, err)
	t.Cleanup(multi.Close)
	url := seamServer(t, multi.Handler())
	oldSecret := newSecret()
	file := workspacesFile(t, workspaces.File{
		Workspaces: []workspaces.WorkspaceEntry{
			{WorkspaceID: "ws-a", Name: "Hotel A", WebhookSecrets: []string{newSecret()}, SeamAPIKey: "seam_a"},
			{WorkspaceID: "ws-b", Name: "Hotel B", WebhookSecrets: []string{oldSecret}},
		},
		PersonalAccessToken: pat,
	})
	env := map[string]string{"WORKSPACES_FILE": file, "SEAM_API_URL": url}

	out := cliOK(t, env, "webhooks", "register", "--url", hookURL, "--workspace", "hotel b", "--print-workspace-entry")
	var entry map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &entry), out)
	require.Equal(t, "ws-b", entry["workspace_id"])
	require.Len(t, entry["webhook_secrets"], 1)
	require.Len(t, entry, 2, "just the fields to paste: %s", out)
	require.Equal(t, 1, multi.Workspace("ws-b").Calls("/webhooks/create"))
	require.Zero(t, multi.Workspace("ws-a").Calls("/webhooks/create"))
	require.Contains(t, cliOK(t, env, "--workspace", "ws-a", "webhooks", "list"), "no webhooks")

	out = cliOK(t, env, "webhooks", "rotate", "--url", hookURL, "--workspace", "Hotel B", "--print-workspace-entry")
	var rotated workspaces.WorkspaceEntry
	require.NoError(t, json.Unmarshal([]byte(out), &rotated), out)
	require.Equal(t, "ws-b", rotated.WorkspaceID)
	require.Len(t, rotated.WebhookSecrets, 2)
	require.Equal(t, oldSecret, rotated.WebhookSecrets[0], "the file's secret stays, the new one is added")

	// The single-workspace variables with the same token.
	require.Len(t, listHooks(t, map[string]string{"SEAM_API_KEY": pat, "SEAM_WORKSPACE_ID": "ws-b", "SEAM_API_URL": url}), 2)
}
