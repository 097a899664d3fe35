package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/lifecycle"
	"github.com/cardwire/cardwire/internal/seamsim"
	"github.com/cardwire/cardwire/internal/workspaces"
)

// variables is every variable seam-sim reads: -h prints it, and tests hold
// it against what loadConfig reads (names and defaults) and against the
// README's configuration table.
var variables = append(config.Vars{
	{Name: "SEAM_SIM_ADDR", Default: "127.0.0.1:8090", Help: "the simulator's Seam API"},
	{Name: "SEAM_SIM_WEBHOOK_URL", Default: "http://127.0.0.1:8080/webhooks/seam", Help: "where it delivers signed webhooks"},
	{Name: "SEAM_SIM_ENCODE_DELAY", Default: "2s", Help: "time from an encode call to its success and webhook"},
	{Name: "WORKSPACES_FILE", Default: "", Help: "the workspaces to simulate, each with its API key and webhook secret (replaces the next four)"},
	{Name: "SEAM_SIM_API_KEY", Default: "seam_test_dev", Help: "the key it expects as Authorization: Bearer"},
	{Name: "SEAM_WORKSPACE_ID", Default: "00000000-0000-4000-8000-000000000001", Help: "the simulated workspace"},
	{Name: "SEAM_WEBHOOK_SECRET", Default: "", Help: "the receiver's whsec_ secret it signs with (the first of a comma-separated list)"},
	{Name: "SEAM_WEBHOOK_SECRET_FILE", Default: "", Help: "file with SEAM_WEBHOOK_SECRET"},
	{Name: "SHUTDOWN_TIMEOUT", Default: "10s", Help: "bound on the whole shutdown"},
}, config.LogVars...)

// cfg is everything seam-sim reads from its environment (variables).
type cfg struct {
	Addr            string
	WebhookURL      string
	EncodeDelay     time.Duration
	ShutdownTimeout time.Duration
	// WorkspacesFile (WORKSPACES_FILE), when set, names every simulated
	// workspace and replaces the single-workspace variables below.
	WorkspacesFile string
	APIKey         config.Secret
	WebhookSecret  config.Secret
	WorkspaceID    string
}

func loadConfig(env *config.Env) cfg {
	c := cfg{
		Addr:            env.String("SEAM_SIM_ADDR", "127.0.0.1:8090"),
		WebhookURL:      env.String("SEAM_SIM_WEBHOOK_URL", "http://127.0.0.1:8080/webhooks/seam"),
		EncodeDelay:     env.Duration("SEAM_SIM_ENCODE_DELAY", 2*time.Second),
		ShutdownTimeout: env.Duration("SHUTDOWN_TIMEOUT", 10*time.Second),
		WorkspacesFile:  env.String("WORKSPACES_FILE", ""),
	}
	if c.WorkspacesFile != "" {
		return c
	}
	c.APIKey = config.Secret(env.String("SEAM_SIM_API_KEY", "seam_test_dev"))
	c.WorkspaceID = env.String("SEAM_WORKSPACE_ID", "00000000-0000-4000-8000-000000000001")
	// The receiver accepts a comma-separated list (rotation); the first
	// secret is the current one, so the simulator signs with it.
	if secrets := env.Secrets("SEAM_WEBHOOK_SECRET"); len(secrets) > 0 {
		c.WebhookSecret = secrets[0]
	}
	return c
}

// validate checks what seamsim cannot name: errors name the variable.
func (c cfg) validate(getenv func(string) string) error {
	if c.WorkspacesFile != "" {
		// The single-workspace variables, which the file replaces.
		var set []string
		for _, name := range []string{"SEAM_SIM_API_KEY", "SEAM_WEBHOOK_SECRET", "SEAM_WEBHOOK_SECRET_FILE", "SEAM_WORKSPACE_ID"} {
			if strings.TrimSpace(getenv(name)) != "" {
				set = append(set, name)
			}
		}
		if len(set) > 0 {
			return fmt.Errorf("WORKSPACES_FILE cannot be combined with %s: the file gives each workspace's API key and webhook secret; unset them", strings.Join(set, ", "))
		}
		return nil
	}
	if c.WebhookSecret == "" {
		return errors.New("SEAM_WEBHOOK_SECRET or SEAM_WEBHOOK_SECRET_FILE must be set to the receiver's whsec_… secret (or WORKSPACES_FILE to simulate its workspaces)")
	}
	return nil
}

func (c cfg) options() seamsim.Options {
	return seamsim.Options{
		APIKey:        c.APIKey.Reveal(),
		WorkspaceID:   c.WorkspaceID,
		WebhookURL:    c.WebhookURL,
		WebhookSecret: c.WebhookSecret.Reveal(),
		EncodeDelay:   c.EncodeDelay,
		// Lenient: whatever ids the worker sends exist on first use.
		Strict: false,
	}
}

// multiOptions simulates every workspace of WORKSPACES_FILE, read and
// validated as the receiver and the worker read it. Each signs its
// webhooks with its first (current) secret; one without an API key is
// reached through the file's personal access token, and one with neither
// cannot be called, so it is left out with a warning.
func (c cfg) multiOptions(log zerolog.Logger) (seamsim.MultiOptions, error) {
	data, err := os.ReadFile(c.WorkspacesFile)
	if err != nil {
		return seamsim.MultiOptions{}, fmt.Errorf("WORKSPACES_FILE: %w", err)
	}
	dir := filepath.Dir(c.WorkspacesFile)
	ws, err := workspaces.Parse(data, dir, os.ReadFile)
	if err != nil {
		return seamsim.MultiOptions{}, fmt.Errorf("WORKSPACES_FILE %s: %w", c.WorkspacesFile, err)
	}
	pat := ws.PersonalAccessToken().Reveal()
	o := seamsim.MultiOptions{PersonalAccessToken: pat, WebhookURL: c.WebhookURL, EncodeDelay: c.EncodeDelay}
	for _, id := range ws.IDs() {
		w, _ := ws.Workspace(id)
		if w.SeamAPIKey == "" && pat == "" {
			log.Warn().Str("workspace_id", id).Str("workspace", w.Label()).
				Msg("no seam_api_key and no seam_personal_access_token: nothing can call this workspace; not simulated")
			continue
		}
		o.Workspaces = append(o.Workspaces, seamsim.WorkspaceOptions{
			WorkspaceID: id, Name: w.Name, APIKey: w.SeamAPIKey.Reveal(), WebhookSecret: w.WebhookSecrets[0].Reveal(),
		})
	}
	if len(o.Workspaces) == 0 {
		return o, fmt.Errorf("WORKSPACES_FILE %s: no workspace has Seam credentials (seam_api_key, or the file's seam_personal_access_token)", c.WorkspacesFile)
	}
	return o, nil
}

// simulator is a Sim or a Multi.
type simulator interface {
	Handler() http.Handler
	Close()
}

// newSimulator builds the single-workspace Sim or, with WORKSPACES_FILE,
// a Multi of the file's workspaces.
func (c cfg) newSimulator(log zerolog.Logger) (simulator, error) {
	simLog := log.With().Str("component", "seamsim").Logger()
	if c.WorkspacesFile == "" {
		o := c.options()
		o.Log = simLog
		sim, err := seamsim.New(o)
		if err != nil {
			return nil, fmt.Errorf("SEAM_SIM_API_KEY, SEAM_SIM_WEBHOOK_URL or SEAM_WEBHOOK_SECRET: %w", err)
		}
		log.Info().Str("workspace_id", c.WorkspaceID).Msg("simulating one workspace")
		return sim, nil
	}
	o, err := c.multiOptions(log)
	if err != nil {
		return nil, err
	}
	o.Log = simLog
	m, err := seamsim.NewMulti(o)
	if err != nil {
		return nil, fmt.Errorf("SEAM_SIM_WEBHOOK_URL or WORKSPACES_FILE %s: %w", c.WorkspacesFile, err)
	}
	for _, w := range o.Workspaces {
		reached := "its API key and the personal access token"
		switch {
		case o.PersonalAccessToken == "":
			reached = "its API key"
		case w.APIKey == "":
			reached = "the personal access token"
		}
		log.Info().Str("workspace_id", w.WorkspaceID).Str("workspace", w.Name).Str("reached_by", reached).Msg("simulating workspace")
	}
	return m, nil
}

// run serves the simulator until ctx is cancelled or the listener fails,
// then stops HTTP first and the simulator's timers and deliveries after.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if exit, err := lifecycle.ParseArgs("seam-sim", args, stdout, variables.Usage); exit {
		return err
	}
	env := &config.Env{Getenv: getenv}
	log := env.Logger(stdout).With().Str("service", "seam-sim").Str("version", lifecycle.Version()).Str("commit", lifecycle.Commit()).Logger()
	c := loadConfig(env)
	if err := errors.Join(env.Err(), c.validate(getenv)); err != nil {
		return err
	}
	sim, err := c.newSimulator(log)
	if err != nil {
		return err
	}

	stopper := lifecycle.NewStopper(log.With().Str("component", "lifecycle").Logger())
	stopper.OnStop("seamsim", func(context.Context) error { sim.Close(); return nil })
	apiLog := log.With().Str("component", "api").Logger()
	srv, srvErr, err := lifecycle.Serve(c.Addr, sim.Handler(), lifecycle.DefaultServerOptions(), apiLog)
	if err != nil {
		return errors.Join(fmt.Errorf("SEAM_SIM_ADDR: %w", err), stopper.Stop(c.ShutdownTimeout))
	}
	stopper.OnStop("api http", srv.Shutdown)
	log.Info().Str("webhook_url", c.WebhookURL).Dur("encode_delay", c.EncodeDelay).Msg("seam-sim started")

	var runErr error
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down")
	case runErr = <-srvErr:
		log.Error().Err(runErr).Msg("listener failed; shutting down")
	}
	return errors.Join(runErr, stopper.Stop(c.ShutdownTimeout))
}
