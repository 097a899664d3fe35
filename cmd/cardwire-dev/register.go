package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"

	"github.com/google/uuid"
)

func registerCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	fs.SetOutput(stdout)
	url := fs.String("url", "http://127.0.0.1:8081/v1/encodings", "worker API URL")
	credential := fs.String("credential", "", "acs_credential_id (random when empty)")
	encoder := fs.String("encoder", "encoder-1", "acs_encoder_id")
	workspace := fs.String("workspace", "00000000-0000-4000-8000-000000000001", "workspace_id")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *credential == "" {
		*credential = uuid.NewString()
	}
	body, err := json.Marshal(map[string]string{
		"workspace_id": *workspace, "acs_encoder_id": *encoder,
		"acs_credential_id": *credential, "action_attempt_id": uuid.NewString(),
	})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, *url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if tok := getenv("WORKER_API_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w (is make run up?)", *url, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(stdout, "%s\n%s", resp.Status, answer)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("worker answered %s", resp.Status)
	}
	return nil
}
