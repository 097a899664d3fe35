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
	p, err := portsOf(getenv)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	fs.SetOutput(stdout)
	url := fs.String("url", p.http("WORKER_API_PORT", "/v1/encodings"), "worker API URL (WORKER_API_PORT, PORT_BASE)")
	credential := fs.String("credential", "", "acs_credential_id (random when empty)")
	encoder := fs.String("encoder", "encoder-1", "acs_encoder_id")
	workspace := fs.String("workspace", "", "workspace_id; with WORKSPACES_FILE an id or name from the file (default: its first); else default "+defaultWorkspaceID)
	confirm := fs.String("confirm-timeout", "", "the encoding's deadline (confirm_timeout, such as 2m; default: the worker's ENCODING_CONFIRM_TIMEOUT, 10s in make run). At the deadline the worker asks Seam about the made-up action attempt: Seam does not know it (404 action_attempt_not_found), and the encoding fails with that error")
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
	body := map[string]string{
		"workspace_id": ws.ID, "acs_encoder_id": *encoder,
		"acs_credential_id": *credential, "action_attempt_id": uuid.NewString(),
	}
	if *confirm != "" {
		body["confirm_timeout"] = *confirm
	}
	var rec json.RawMessage
	if err := post(ctx, *url, bearer, body, &rec); err != nil {
		return fmt.Errorf("%w (is make run up?)", err)
	}
	fmt.Fprintf(stdout, "%s\n", rec)
	return nil
}
