package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/cardwire/cardwire/internal/workspaces"
)

func secretCmd(stdout io.Writer) error {
	secret, err := newWebhookSecret()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, secret)
	return err
}

func sendCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	p, err := portsOf(getenv)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stdout)
	url := fs.String("url", p.http("RECEIVER_PORT", "/webhooks/seam"), "receiver webhook URL (RECEIVER_PORT, PORT_BASE)")
	secretFile := fs.String("secret-file", ".data/dev-webhook-secret", "without WORKSPACES_FILE: file holding the whsec_ secret (SEAM_WEBHOOK_SECRET wins when set)")
	eventType := fs.String("type", "acs_credential.issued", "Seam event type of the sample event")
	workspace := fs.String("workspace", "", "workspace of the sample event; with WORKSPACES_FILE an id or name from the file (default: its first), signed with that workspace's secret; else a workspace_id (default "+defaultWorkspaceID+")")
	credential := fs.String("credential", "", "acs_credential_id (or access_method_id for access_method.* events); random when empty")
	bodyFile := fs.String("body", "", "send this file's bytes as the body instead of a generated event")
	webhookID := fs.String("id", "", "svix-id; random when empty (repeat one to see a duplicate)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	ws, secret, err := sendSecret(getenv, *secretFile, *workspace)
	if err != nil {
		return err
	}
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		return fmt.Errorf("the secret is not a whsec_ base64 secret: %w", err)
	}

	var body []byte
	if *bodyFile != "" {
		if body, err = os.ReadFile(*bodyFile); err != nil {
			return err
		}
	} else if body, err = sampleEvent(*eventType, ws.ID, *credential); err != nil {
		return err
	}
	id := *webhookID
	if id == "" {
		id = "msg_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	}
	now := time.Now()
	sig, err := wh.Sign(id, now, body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, *url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("svix-id", id)
	req.Header.Set("svix-timestamp", fmt.Sprint(now.Unix()))
	req.Header.Set("svix-signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w (is make run up?)", *url, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(stdout, "svix-id %s → %s %s\n%s\n", id, resp.Status, strings.TrimSpace(string(answer)), body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}

// sendSecret returns the workspace of the event and the secret to sign it
// with: the workspace's current secret from WORKSPACES_FILE, else
// SEAM_WEBHOOK_SECRET or the first line of secretFile, as the receiver
// would be configured.
func sendSecret(getenv func(string) string, secretFile, sel string) (*workspaces.Workspace, string, error) {
	c, err := loadWorkspaces(getenv)
	if err != nil {
		return nil, "", err
	}
	ws, err := workspaceFor(c, sel)
	if err != nil {
		return nil, "", err
	}
	env := strings.TrimSpace(strings.Split(getenv("SEAM_WEBHOOK_SECRET"), ",")[0])
	switch {
	case c != nil && env != "":
		return nil, "", errors.New("set one of WORKSPACES_FILE and SEAM_WEBHOOK_SECRET, as for the receiver")
	case c != nil:
		return ws, ws.WebhookSecrets[0].Reveal(), nil // the current one; Parse ensures there is one
	case env != "":
		return ws, env, nil
	}
	b, err := os.ReadFile(secretFile)
	if err != nil {
		return nil, "", fmt.Errorf("no secret: set WORKSPACES_FILE or SEAM_WEBHOOK_SECRET, or run make run first (it writes .data/workspaces.json): %w", err)
	}
	return ws, strings.TrimSpace(strings.Split(string(b), "\n")[0]), nil
}

// sampleEvent builds a Seam event body with the fields its type requires.
func sampleEvent(eventType, workspace, subjectID string) ([]byte, error) {
	if subjectID == "" {
		subjectID = uuid.NewString()
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	ev := map[string]any{
		"event_id":     uuid.NewString(),
		"event_type":   eventType,
		"workspace_id": workspace,
		"created_at":   now,
		"occurred_at":  now,
	}
	switch {
	case strings.HasPrefix(eventType, "acs_credential."):
		ev["acs_credential_id"] = subjectID
		ev["acs_system_id"] = uuid.NewString()
	case strings.HasPrefix(eventType, "access_method."):
		ev["access_method_id"] = subjectID
		ev["access_grant_ids"] = []string{uuid.NewString()}
	case strings.HasPrefix(eventType, "acs_encoder."):
		ev["acs_encoder_id"] = subjectID
		ev["acs_system_id"] = uuid.NewString()
	}
	return json.Marshal(ev)
}
