package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	svix "github.com/svix/svix-webhooks/go"
)

func secretCmd(stdout io.Writer) error {
	key := make([]byte, 24)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	_, err := fmt.Fprintln(stdout, "whsec_"+base64.StdEncoding.EncodeToString(key))
	return err
}

func sendCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stdout)
	url := fs.String("url", "http://127.0.0.1:8080/webhooks/seam", "receiver webhook URL")
	secretFile := fs.String("secret-file", ".data/dev-webhook-secret", "file holding the whsec_ secret (SEAM_WEBHOOK_SECRET wins when set)")
	eventType := fs.String("type", "acs_credential.issued", "Seam event type of the sample event")
	workspace := fs.String("workspace", "00000000-0000-4000-8000-000000000001", "workspace_id of the sample event")
	credential := fs.String("credential", "", "acs_credential_id (or access_method_id for access_method.* events); random when empty")
	bodyFile := fs.String("body", "", "send this file's bytes as the body instead of a generated event")
	webhookID := fs.String("id", "", "svix-id; random when empty (repeat one to see a duplicate)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	secret := strings.TrimSpace(strings.Split(getenv("SEAM_WEBHOOK_SECRET"), ",")[0])
	if secret == "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("no secret: set SEAM_WEBHOOK_SECRET or run make run first (it writes %s): %w", *secretFile, err)
		}
		secret = strings.TrimSpace(strings.Split(string(b), "\n")[0])
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
	} else if body, err = sampleEvent(*eventType, *workspace, *credential); err != nil {
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
