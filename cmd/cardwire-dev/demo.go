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
	"sync"
	"time"

	"github.com/google/uuid"
)

// demoCmd starts two encodings through the worker against the local Seam
// simulator: one that succeeds (confirmed by the webhook) and one that the
// simulator fails (no webhook: found at the deadline). With WORKSPACES_FILE
// it does so in every workspace at once (or in -workspace's), each called
// with its own Seam credentials.
func demoCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs, _, d, err := newDemoFlags("demo", "only this workspace (an id or a name; default: every one with Seam credentials)", getenv, stdout)
	if err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	targets, err := demoTargets(getenv, d.workspace, d.simKey, stdout)
	if err != nil {
		return err
	}
	api, sim := d.api, d.sim
	token := getenv("WORKER_API_TOKEN")
	in := ""
	if len(targets) > 1 {
		in = " in each workspace"
	}

	fmt.Fprintf(stdout, "── 1. an encoding that succeeds%s: the webhook confirms it\n", in)
	encoders := make([]string, len(targets))
	for i := range targets {
		encoders[i] = uuid.NewString()
	}
	if err := demoStep(ctx, stdout, api, token, targets, encoders); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "\n── 2. an encoding that fails at Seam%s (no card on the encoder): Seam sends no webhook; the deadline finds it\n", in)
	for i, t := range targets {
		encoders[i] = uuid.NewString()
		if err := postWith(ctx, sim+"/acs/encoders/simulate/next_credential_encode_will_fail", t.seam,
			map[string]string{"acs_encoder_id": encoders[i], "error_code": "no_credential_on_encoder"}, nil); err != nil {
			return fmt.Errorf("simulator: %w (is make run up?)", err)
		}
	}
	return demoStep(ctx, stdout, api, token, targets, encoders)
}

// demoFlags are the flags demo and demo-outage share: where the worker
// API and the simulator are, and which workspace to show.
type demoFlags struct {
	api, sim, simKey, workspace string
}

// newDemoFlags checks that the stack runs the simulator and returns the
// flag set of command name with the shared flags defined (workspaceHelp
// says what -workspace selects with WORKSPACES_FILE), and the stack's
// ports for the command's own flags.
func newDemoFlags(name, workspaceHelp string, getenv func(string) string, stdout io.Writer) (*flag.FlagSet, ports, *demoFlags, error) {
	p, err := portsOf(getenv)
	if err != nil {
		return nil, ports{}, nil, err
	}
	if err := needSimulator(getenv, name); err != nil {
		return nil, ports{}, nil, err
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	d := &demoFlags{}
	fs.StringVar(&d.api, "api", p.http("WORKER_API_PORT", ""), "worker API base URL (WORKER_API_PORT, PORT_BASE)")
	fs.StringVar(&d.sim, "sim", p.http("SIM_PORT", ""), "Seam simulator base URL (SIM_PORT, PORT_BASE)")
	fs.StringVar(&d.simKey, "sim-key", "seam_test_dev", "without WORKSPACES_FILE: the simulator's API key")
	fs.StringVar(&d.workspace, "workspace", "", "with WORKSPACES_FILE: "+workspaceHelp+"; else the workspace_id to send")
	return fs, p, d, nil
}

// target is one workspace of the demo.
type target struct {
	label       string      // printed before its lines; "" with one workspace and no file
	workspaceID string      // sent to the worker; "" leaves it to the worker
	seam        http.Header // the simulator's credentials for the workspace
}

func demoTargets(getenv func(string) string, sel, simKey string, stdout io.Writer) ([]target, error) {
	c, err := loadWorkspaces(getenv)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return []target{{workspaceID: sel, seam: http.Header{"Authorization": {"Bearer " + simKey}}}}, nil
	}
	ids := c.IDs()
	if sel != "" {
		w, err := workspaceFor(c, sel)
		if err != nil {
			return nil, err
		}
		ids = []string{w.ID}
	}
	var out []target
	for _, id := range ids {
		w, _ := c.Workspace(id)
		creds, ok := c.Seam(id)
		if !ok {
			fmt.Fprintf(stdout, "skipping %s: it has no Seam credentials (track-only)\n", w.Label())
			continue
		}
		h := http.Header{"Authorization": {"Bearer " + creds.APIKey.Reveal()}}
		if creds.Workspace != "" {
			h.Set("seam-workspace", creds.Workspace)
		}
		out = append(out, target{label: w.Label(), workspaceID: id, seam: h})
	}
	if len(out) == 0 {
		return nil, errors.New("no workspace in WORKSPACES_FILE has Seam credentials")
	}
	return out, nil
}

// demoStep starts one encoding per target (on its encoder), then waits for
// every outcome at once and prints them in order.
func demoStep(ctx context.Context, stdout io.Writer, api, token string, targets []target, encoders []string) error {
	bearer := ""
	if token != "" {
		bearer = "Bearer " + token
	}
	width := 0
	for _, t := range targets {
		width = max(width, len(t.label))
	}
	prefix := func(t target) string {
		if t.label == "" {
			return ""
		}
		return fmt.Sprintf("%-*s  ", width, t.label)
	}
	start := time.Now()
	ids := make([]string, len(targets))
	for i, t := range targets {
		body := map[string]string{"acs_encoder_id": encoders[i], "acs_credential_id": uuid.NewString()}
		if t.workspaceID != "" {
			body["workspace_id"] = t.workspaceID
		}
		var rec map[string]any
		if err := post(ctx, api+"/v1/encodings", bearer, body, &rec); err != nil {
			return fmt.Errorf("start: %w (is make run up?)", err)
		}
		fmt.Fprintf(stdout, "%sstarted   %s: status=%v action_attempt_id=%v deadline=%v\n",
			prefix(t), rec["encoding_id"], rec["status"], rec["action_attempt_id"], rec["deadline"])
		ids[i], _ = rec["encoding_id"].(string)
	}
	type outcome struct {
		rec   map[string]any
		after time.Duration
		err   error
	}
	outcomes := make([]outcome, len(targets))
	var wg sync.WaitGroup
	for i := range targets {
		wg.Go(func() {
			rec, err := awaitOutcome(ctx, api, bearer, ids[i])
			outcomes[i] = outcome{rec, time.Since(start), err}
		})
	}
	wg.Wait()
	for i, t := range targets {
		o := outcomes[i]
		if o.err != nil {
			return o.err
		}
		out, _ := json.MarshalIndent(o.rec, "          ", "  ")
		fmt.Fprintf(stdout, "%soutcome after %s: %s\n", prefix(t), o.after.Round(time.Millisecond), out)
	}
	return nil
}

// awaitOutcome asks the worker for the encoding, answered the moment it
// settles.
func awaitOutcome(ctx context.Context, api, bearer, id string) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/v1/encodings/"+id+"?wait=60s", nil)
	if err != nil {
		return nil, err
	}
	if bearer != "" {
		req.Header.Set("Authorization", bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rec map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// post sends a JSON body with bearer as Authorization (none when empty)
// and decodes a 2xx answer into out (if not nil).
func post(ctx context.Context, url, bearer string, body, out any) error {
	h := http.Header{}
	if bearer != "" {
		h.Set("Authorization", bearer)
	}
	return postWith(ctx, url, h, body, out)
}

// postWith sends a JSON body with the headers h and decodes a 2xx answer
// into out (if not nil).
func postWith(ctx context.Context, url string, h http.Header, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header = h.Clone()
	req.Header.Set("Content-Type", "application/json")
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
