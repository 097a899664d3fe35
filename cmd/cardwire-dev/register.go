package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/google/uuid"
)

func registerCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	fs.SetOutput(stdout)
	url := fs.String("url", "http://127.0.0.1:8081/v1/encodings", "worker API URL")
	credential := fs.String("credential", "", "acs_credential_id (random when empty)")
	encoder := fs.String("encoder", "encoder-1", "acs_encoder_id")
	workspace := fs.String("workspace", "", "workspace_id; with WORKSPACES_FILE an id or name from the file (default: its first); else default "+defaultWorkspaceID)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := loadWorkspaces(getenv)
	if err != nil {
		return err
	}
	ws, err := workspaceFor(c, *workspace)
	if err != nil {
		return err
	}
	if *credential == "" {
		*credential = uuid.NewString()
	}
	bearer := ""
	if tok := getenv("WORKER_API_TOKEN"); tok != "" {
		bearer = "Bearer " + tok
	}
	var rec json.RawMessage
	if err := post(ctx, *url, bearer, map[string]string{
		"workspace_id": ws.ID, "acs_encoder_id": *encoder,
		"acs_credential_id": *credential, "action_attempt_id": uuid.NewString(),
	}, &rec); err != nil {
		return fmt.Errorf("%w (is make run up?)", err)
	}
	fmt.Fprintf(stdout, "%s\n", rec)
	return nil
}
