package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// demoCmd starts two encodings through the worker against the local Seam
// simulator: one that succeeds (confirmed by the webhook) and one that the
// simulator fails (no webhook: found at the deadline).
func demoCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stdout)
	api := fs.String("api", "http://127.0.0.1:8081", "worker API base URL")
	sim := fs.String("sim", "http://127.0.0.1:8090", "Seam simulator base URL")
	simKey := fs.String("sim-key", "seam_test_dev", "the simulator's API key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	token := getenv("WORKER_API_TOKEN")

	fmt.Fprintln(stdout, "── 1. an encoding that succeeds: the webhook confirms it")
	if err := demoOne(ctx, stdout, *api, token, uuid.NewString()); err != nil {
		return err
	}

	fmt.Fprintln(stdout, "\n── 2. an encoding that fails at Seam (no card on the encoder): Seam sends no webhook; the deadline finds it")
	encoder := uuid.NewString()
	if err := post(ctx, *sim+"/acs/encoders/simulate/next_credential_encode_will_fail", "Bearer "+*simKey,
		map[string]string{"acs_encoder_id": encoder, "error_code": "no_credential_on_encoder"}, nil); err != nil {
		return fmt.Errorf("simulator: %w (is make run up?)", err)
	}
	return demoOne(ctx, stdout, *api, token, encoder)
}

func demoOne(ctx context.Context, stdout io.Writer, api, token, encoder string) error {
	bearer := ""
	if token != "" {
		bearer = "Bearer " + token
	}
	start := time.Now()
	var rec map[string]any
	if err := post(ctx, api+"/v1/encodings", bearer, map[string]string{
		"acs_encoder_id": encoder, "acs_credential_id": uuid.NewString(),
	}, &rec); err != nil {
		return fmt.Errorf("start: %w (is make run up?)", err)
	}
	fmt.Fprintf(stdout, "started   %s: status=%v action_attempt_id=%v deadline=%v\n", rec["encoding_id"], rec["status"], rec["action_attempt_id"], rec["deadline"])
	id, _ := rec["encoding_id"].(string)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/v1/encodings/"+id+"?wait=60s", nil)
	if err != nil {
		return err
	}
	if bearer != "" {
		req.Header.Set("Authorization", bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&rec); err != nil {
		return err
	}
	out, _ := json.MarshalIndent(rec, "          ", "  ")
	fmt.Fprintf(stdout, "outcome after %s: %s\n", time.Since(start).Round(time.Millisecond), out)
	return nil
}

// post sends a JSON body and decodes a 2xx answer into out (if not nil).
func post(ctx context.Context, url, bearer string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s %s", url, resp.Status, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}
