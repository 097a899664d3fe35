package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/lifecycle"
	"github.com/cardwire/cardwire/internal/seamsim"
)

// cfg is everything seam-sim reads from its environment.
type cfg struct {
	Addr            string
	APIKey          config.Secret
	WebhookURL      string
	WebhookSecret   config.Secret
	EncodeDelay     time.Duration
	WorkspaceID     string
	ShutdownTimeout time.Duration
}

func loadConfig(env *config.Env) cfg {
	c := cfg{
		Addr:            env.String("SEAM_SIM_ADDR", "127.0.0.1:8090"),
		APIKey:          config.Secret(env.String("SEAM_SIM_API_KEY", "seam_test_dev")),
		WebhookURL:      env.String("SEAM_SIM_WEBHOOK_URL", "http://127.0.0.1:8080/webhooks/seam"),
		EncodeDelay:     env.Duration("SEAM_SIM_ENCODE_DELAY", 2*time.Second),
		WorkspaceID:     env.String("SEAM_WORKSPACE_ID", "00000000-0000-4000-8000-000000000001"),
		ShutdownTimeout: env.Duration("SHUTDOWN_TIMEOUT", 10*time.Second),
	}
	// The receiver accepts a comma-separated list (rotation); the first
	// secret is the current one, so the simulator signs with it.
	if secrets := env.Secrets("SEAM_WEBHOOK_SECRET"); len(secrets) > 0 {
		c.WebhookSecret = secrets[0]
	}
	return c
}

// validate checks what seamsim cannot name: errors name the variable.
func (c cfg) validate() error {
	if c.WebhookSecret == "" {
		return errors.New("SEAM_WEBHOOK_SECRET or SEAM_WEBHOOK_SECRET_FILE must be set to the receiver's whsec_… secret")
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

// run serves the simulator until ctx is cancelled or the listener fails,
// then stops HTTP first and the simulator's timers and deliveries after.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if exit, err := lifecycle.ParseArgs("seam-sim", args, stdout); exit {
		return err
	}
	env := &config.Env{Getenv: getenv}
	log := env.Logger(stdout).With().Str("service", "seam-sim").Str("version", lifecycle.Version()).Logger()
	c := loadConfig(env)
	if err := errors.Join(env.Err(), c.validate()); err != nil {
		return err
	}
	o := c.options()
	o.Log = log.With().Str("component", "seamsim").Logger()
	sim, err := seamsim.New(o)
	if err != nil {
		return fmt.Errorf("SEAM_SIM_API_KEY, SEAM_SIM_WEBHOOK_URL or SEAM_WEBHOOK_SECRET: %w", err)
	}

	stopper := lifecycle.NewStopper(log.With().Str("component", "lifecycle").Logger())
	stopper.OnStop("seamsim", func(context.Context) error { sim.Close(); return nil })
	apiLog := log.With().Str("component", "api").Logger()
	srv, srvErr, err := lifecycle.Serve(c.Addr, sim.Handler(), lifecycle.DefaultServerOptions(), apiLog)
	if err != nil {
		return errors.Join(fmt.Errorf("SEAM_SIM_ADDR: %w", err), stopper.Stop(c.ShutdownTimeout))
	}
	stopper.OnStop("api http", srv.Shutdown)
	log.Info().Str("webhook_url", c.WebhookURL).Str("workspace_id", c.WorkspaceID).
		Dur("encode_delay", c.EncodeDelay).Msg("seam-sim started")

	var runErr error
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down")
	case runErr = <-srvErr:
		log.Error().Err(runErr).Msg("listener failed; shutting down")
	}
	return errors.Join(runErr, stopper.Stop(c.ShutdownTimeout))
}
