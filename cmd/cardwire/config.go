package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/workspaces"
)

// seamTarget is the workspace a Seam command acts in, with a client
// holding its credentials.
type seamTarget struct {
	client *seam.Client
	// id is the workspace id; empty for an API key without
	// SEAM_WORKSPACE_ID (the key names its workspace to Seam).
	id      string
	label   string
	baseURL string
	// file is set when the credentials come from WORKSPACES_FILE; secrets
	// are then the workspace's webhook secrets there.
	file    bool
	secrets []string
	pat     bool
}

// seam resolves the Seam credentials as the worker does: WORKSPACES_FILE
// with --workspace, else SEAM_API_KEY (a personal access token needing
// SEAM_WORKSPACE_ID or --workspace). needID says the command must know the
// workspace id (the events of a replay are stored under it).
func (c *cli) seam(needID bool) (*seamTarget, error) {
	env := &config.Env{Getenv: c.getenv}
	key := env.Secret("SEAM_API_KEY").Reveal()
	base := env.String("SEAM_API_URL", seam.DefaultURL)
	wsEnv := env.String("SEAM_WORKSPACE_ID", "")
	file := env.String("WORKSPACES_FILE", "")
	if err := env.Err(); err != nil {
		return nil, err
	}
	if err := seam.CheckBaseURL(base); err != nil {
		return nil, fmt.Errorf("SEAM_API_URL: %w", err)
	}
	t := &seamTarget{baseURL: base}
	o := seam.DefaultOptions()
	o.BaseURL, o.Registerer = base, prometheus.NewRegistry()
	switch {
	case file != "" && key != "":
		return nil, errors.New("at most one of WORKSPACES_FILE and SEAM_API_KEY (or SEAM_API_KEY_FILE) may be set: with WORKSPACES_FILE each workspace's credentials are in the file (pick one with --workspace)")
	case file != "":
		cfg, err := loadWorkspaces(file)
		if err != nil {
			return nil, err
		}
		w, err := pickWorkspace(cfg, c.g.workspace)
		if err != nil {
			return nil, err
		}
		cred, ok := cfg.Seam(w.ID)
		if !ok {
			return nil, fmt.Errorf("workspace %s (%s) has no Seam credentials in WORKSPACES_FILE: give it a seam_api_key, or the file a seam_personal_access_token", w.Label(), w.ID)
		}
		t.id, t.label, t.file, t.pat = w.ID, w.Label(), true, cred.Workspace != ""
		for _, s := range w.WebhookSecrets {
			t.secrets = append(t.secrets, s.Reveal())
		}
		o.APIKey, o.WorkspaceID = cred.APIKey.Reveal(), cred.Workspace
	case key == "":
		return nil, errors.New("SEAM_API_KEY (or SEAM_API_KEY_FILE) must be set, or WORKSPACES_FILE with --workspace")
	default:
		t.id = c.g.workspace
		if t.id == "" {
			t.id = wsEnv
		}
		t.label, t.pat = t.id, seam.IsPersonalAccessToken(key)
		o.APIKey = key
		switch {
		case t.pat && t.id == "":
			return nil, errors.New("SEAM_API_KEY is a personal access token (seam_at…): set SEAM_WORKSPACE_ID (or --workspace) to the workspace it acts in")
		case t.pat:
			// The token reaches several workspaces: the header names one.
			o.WorkspaceID = t.id
		case needID && t.id == "":
			return nil, errors.New("set SEAM_WORKSPACE_ID (or --workspace) to the workspace of SEAM_API_KEY: the events are stored under it")
		}
	}
	client, err := seam.New(o)
	if err != nil {
		return nil, fmt.Errorf("SEAM_API_KEY / SEAM_API_URL: %w", err)
	}
	t.client = client
	return t, nil
}

// explain turns a Seam failure of call (the endpoint) into one line that
// names what to check.
func (t *seamTarget) explain(call string, err error) error {
	var apiErr *seam.APIError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax), errors.As(err, &typ):
		return fmt.Errorf("SEAM_API_URL %s did not answer %s with Seam's JSON: is it Seam's API (default %s)? (%w)", t.baseURL, call, seam.DefaultURL, err)
	case errors.Is(err, seam.ErrUnavailable):
		return fmt.Errorf("cannot reach Seam at %s: check SEAM_API_URL and the network (%w)", t.baseURL, err)
	case errors.As(err, &apiErr) && (apiErr.Status == 401 || apiErr.Status == 403):
		what := "SEAM_API_KEY (or SEAM_API_KEY_FILE)"
		if t.file {
			what = fmt.Sprintf("the seam_api_key of workspace %s in WORKSPACES_FILE (or its seam_personal_access_token)", t.label)
		}
		if t.pat {
			what += fmt.Sprintf(", and that the personal access token reaches workspace %s", t.id)
		}
		return fmt.Errorf("credentials refused by Seam at %s (%d %s): check %s", t.baseURL, apiErr.Status, apiErr.Type, what)
	case errors.As(err, &apiErr) && apiErr.Status == 404 && (apiErr.Type == "not_found" || strings.HasPrefix(apiErr.Type, "http_")):
		return fmt.Errorf("SEAM_API_URL %s has no %s (404): is it Seam's API (default %s)?", t.baseURL, call, seam.DefaultURL)
	}
	return fmt.Errorf("%s: %w", call, err)
}

// loadWorkspaces reads WORKSPACES_FILE as the receiver and the worker do.
func loadWorkspaces(path string) (*workspaces.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("WORKSPACES_FILE: %w", err)
	}
	cfg, err := workspaces.Parse(data, filepath.Dir(path), os.ReadFile)
	if err != nil {
		return nil, fmt.Errorf("WORKSPACES_FILE %s: %w", path, err)
	}
	return cfg, nil
}

// pickWorkspace resolves --workspace (sel) in the file: by id, or by name
// ignoring case; without one, the file's only workspace.
func pickWorkspace(cfg *workspaces.Config, sel string) (*workspaces.Workspace, error) {
	var have []string
	for _, id := range cfg.IDs() {
		w, _ := cfg.Workspace(id)
		if sel != "" && (id == sel || w.Name != "" && strings.EqualFold(w.Name, sel)) {
			return w, nil
		}
		have = append(have, fmt.Sprintf("%q (%s)", w.Label(), id))
	}
	switch {
	case sel == "" && len(have) == 1:
		w, _ := cfg.Workspace(cfg.IDs()[0])
		return w, nil
	case sel == "":
		return nil, fmt.Errorf("WORKSPACES_FILE has %d workspaces: pass --workspace with one of %s", len(have), strings.Join(have, ", "))
	}
	return nil, fmt.Errorf("--workspace %q is not in WORKSPACES_FILE, which has %s", sel, strings.Join(have, ", "))
}

// workspaceID resolves --workspace for a command that only needs an id
// (the worker API): a name of WORKSPACES_FILE becomes its id; anything
// else is taken as an id.
func (c *cli) workspaceID() (string, error) {
	sel := strings.TrimSpace(c.g.workspace)
	file := strings.TrimSpace(c.getenv("WORKSPACES_FILE"))
	if sel == "" || file == "" {
		return sel, nil
	}
	cfg, err := loadWorkspaces(file)
	if err != nil {
		return "", err
	}
	if w, err := pickWorkspace(cfg, sel); err == nil {
		return w.ID, nil
	}
	// Not in the file: an id the worker knows, or it says it does not.
	return sel, nil
}

// natsConn is a connection to cardwire's NATS and its SEAM_EVENTS stream.
type natsConn struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
}

// connect connects to NATS_URL once, without the binaries' reconnect-for-
// ever (a CLI should fail at once, saying what to set), and finds
// SEAM_EVENTS.
func (c *cli) connect(ctx context.Context) (*natsConn, error) {
	env := &config.Env{Getenv: c.getenv}
	raw := env.String("NATS_URL", nats.DefaultURL)
	creds := env.String("NATS_CREDS_FILE", "")
	if err := env.Err(); err != nil {
		return nil, err
	}
	shown := redactURLs(raw)
	opts := []nats.Option{nats.Name("cardwire-cli"), nats.Timeout(3 * time.Second), nats.MaxReconnects(0)}
	if creds != "" {
		if _, err := os.Stat(creds); err != nil {
			return nil, fmt.Errorf("NATS_CREDS_FILE: %w", err)
		}
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(raw, opts...)
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired):
		return nil, fmt.Errorf("NATS at %s refused the connection (%w): set NATS_CREDS_FILE to credentials it accepts", shown, err)
	case err != nil:
		return nil, fmt.Errorf("cannot reach NATS at %s (%w): set NATS_URL (default %s), and NATS_CREDS_FILE if it needs credentials", shown, err, nats.DefaultURL)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	st, err := js.Stream(ctx, streams.EventsStream)
	if err != nil {
		nc.Close()
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			return nil, fmt.Errorf("NATS at %s has no stream %s: is NATS_URL cardwire's NATS? (the receiver and the worker create it)", shown, streams.EventsStream)
		case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
			return nil, fmt.Errorf("NATS at %s has no JetStream (for this account): is NATS_URL cardwire's NATS, and NATS_CREDS_FILE its account's?", shown)
		}
		return nil, fmt.Errorf("NATS at %s: stream %s: %w", shown, streams.EventsStream, err)
	}
	return &natsConn{nc: nc, js: js, stream: st}, nil
}

func (n *natsConn) Close() { n.nc.Close() }

// redactURLs hides the user info (a password, or a token in the user
// name) of comma-separated server URLs.
func redactURLs(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = url.User("xxxxx")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
