package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/admin"
	"github.com/cardwire/cardwire/internal/broker"
	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/lifecycle"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/workspaces"
)

// headerRoom is what the NATS message headers may take on top of the body.
const headerRoom = 4 << 10

// run starts the receiver and blocks until ctx is cancelled or a listener
// fails, then shuts down: public HTTP first (in-flight webhooks get their
// answer), then the NATS connection is drained, then the admin port.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if exit, err := lifecycle.ParseArgs("webhook-receiver", args, stdout, variables.Usage); exit {
		return err
	}

	env := &config.Env{Getenv: getenv}
	log := env.Logger(stdout).With().Str("service", "webhook-receiver").Str("version", lifecycle.Version()).Str("commit", lifecycle.Commit()).Logger()
	c := loadConfig(env)
	if err := errors.Join(env.Err(), c.validate()); err != nil {
		return err
	}
	reg := admin.NewRegistry()
	verifier, tenancy, err := newVerifier(c, reg, log)
	if err != nil {
		return err
	}

	stopper := lifecycle.NewStopper(log.With().Str("component", "lifecycle").Logger())
	nc, err := broker.Connect(c.NATS, log, reg)
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return err
	}

	adminHandler, err := admin.Handler(admin.Options{
		Gatherer:     reg,
		CheckTimeout: time.Second,
		Log:          log.With().Str("component", "admin").Logger(),
		Checks: []admin.Check{
			{Name: "nats", Func: func(context.Context) error { return broker.Ready(nc) }},
			{Name: "stream", Func: func(ctx context.Context) error {
				st, err := js.Stream(ctx, streams.EventsStream)
				if err != nil {
					return err
				}
				return streams.CheckEventsStream(st.CachedInfo().Config)
			}},
		},
	})
	if err != nil {
		nc.Close()
		return err
	}
	adminSrv, adminErr, err := lifecycle.Serve(c.AdminAddr, adminHandler, lifecycle.DefaultServerOptions(), log.With().Str("component", "admin").Logger())
	if err != nil {
		nc.Close()
		return fmt.Errorf("ADMIN_ADDR: %w", err)
	}
	// Teardown runs newest first: public HTTP, then NATS, then admin (which
	// keeps answering probes and scrapes until the end).
	stopper.OnStop("admin http", adminSrv.Shutdown)
	stopper.OnStop("nats", func(ctx context.Context) error { return broker.Drain(ctx, nc) })

	if err := prepareNATS(ctx, c, nc, js, log); err != nil {
		if ctx.Err() != nil {
			// Asked to stop while starting: a clean exit, not a failure.
			return stopper.Stop(c.ShutdownTimeout)
		}
		return errors.Join(err, stopper.Stop(c.ShutdownTimeout))
	}

	c.Receiver.Verifier = verifier
	c.Receiver.Publisher = js
	c.Receiver.Registerer = reg
	c.Receiver.Log = log.With().Str("component", "receiver").Logger()
	receiver, err := events.NewReceiver(c.Receiver)
	if err != nil {
		return errors.Join(err, stopper.Stop(c.ShutdownTimeout))
	}
	publicSrv, publicErr, err := lifecycle.Serve(c.ReceiverAddr, receiver.Routes(), c.Server, c.Receiver.Log)
	if err != nil {
		return errors.Join(fmt.Errorf("RECEIVER_ADDR: %w", err), stopper.Stop(c.ShutdownTimeout))
	}
	stopper.OnStop("public http", publicSrv.Shutdown)
	reloads, stopReloads := context.WithCancel(context.Background())
	defer stopReloads()
	go tenancy.Run(reloads)
	ev := log.Info()
	if c.WorkspacesFile != "" {
		ev = ev.Str("workspaces_file", c.WorkspacesFile).Int("workspaces", len(tenancy.Current().IDs()))
	} else {
		ev = ev.Int("secrets", len(c.Secrets))
	}
	ev.Dur("tolerance", c.Tolerance).Int64("max_body_bytes", c.Receiver.MaxBodyBytes).Msg("receiver started")

	var runErr error
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down")
	case runErr = <-publicErr:
		log.Error().Err(runErr).Msg("public listener failed; shutting down")
	case runErr = <-adminErr:
		log.Error().Err(runErr).Msg("admin listener failed; shutting down")
	}
	return errors.Join(runErr, stopper.Stop(c.ShutdownTimeout))
}

// newVerifier builds the verifier from the single-workspace secrets, or
// from WORKSPACES_FILE, whose reloads then replace its secrets.
func newVerifier(c cfg, reg prometheus.Registerer, log zerolog.Logger) (*events.Verifier, *workspaces.Source, error) {
	if c.WorkspacesFile == "" {
		secrets := make([]string, len(c.Secrets))
		for i, s := range c.Secrets {
			secrets[i] = s.Reveal()
		}
		v, err := events.NewVerifier(secrets, c.Tolerance)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", c.SecretsFrom, err)
		}
		return v, workspaces.Static(workspaces.Single(workspaces.SingleOptions{WebhookSecrets: secrets})), nil
	}
	var v *events.Verifier
	src, err := workspaces.Open(workspaces.SourceOptions{
		Path: c.WorkspacesFile, Interval: c.WorkspacesEvery, Registerer: reg,
		Log: log.With().Str("component", "workspaces").Logger(),
		Apply: func(cfg *workspaces.Config) error {
			keys := webhookKeys(cfg)
			if v == nil {
				var err error
				v, err = events.NewWorkspaceVerifier(keys, c.Tolerance)
				return err
			}
			return v.SetWorkspaces(keys)
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("WORKSPACES_FILE: %w", err)
	}
	return v, src, nil
}

// webhookKeys are the webhook secrets of every configured workspace.
func webhookKeys(cfg *workspaces.Config) map[string]events.WorkspaceSecrets {
	keys := make(map[string]events.WorkspaceSecrets, len(cfg.IDs()))
	for _, id := range cfg.IDs() {
		w, _ := cfg.Workspace(id)
		secrets := make([]string, len(w.WebhookSecrets))
		for i, s := range w.WebhookSecrets {
			secrets[i] = s.Reveal()
		}
		keys[id] = events.WorkspaceSecrets{Label: w.Label(), Secrets: secrets}
	}
	return keys
}

// prepareNATS waits for the first connection, checks that a maximal webhook
// fits in one NATS message, and (unless streams are managed elsewhere)
// creates or updates SEAM_EVENTS, retrying until it succeeds or ctx ends.
func prepareNATS(ctx context.Context, c cfg, nc *nats.Conn, js jetstream.JetStream, log zerolog.Logger) error {
	if !nc.IsConnected() {
		log.Info().Msg("waiting for NATS; the public port opens once it is reachable")
	}
	if err := broker.WaitConnected(ctx, nc); err != nil {
		return err
	}
	if limit := nc.MaxPayload(); c.Receiver.MaxBodyBytes+headerRoom > limit {
		return fmt.Errorf("RECEIVER_MAX_BODY_BYTES (%d) plus %d bytes of headers exceeds the NATS server's max_payload (%d)",
			c.Receiver.MaxBodyBytes, headerRoom, limit)
	}
	if !c.ManageStream {
		// Not fatal: the stream may be created after us. /readyz stays 503
		// until it exists and is configured as cardwire needs.
		ev := log.Info()
		err := broker.CheckJetStream(ctx, nc, js)
		if err == nil {
			var st jetstream.Stream
			if st, err = js.Stream(ctx, streams.EventsStream); err == nil {
				err = streams.CheckEventsStream(st.CachedInfo().Config)
			}
		}
		if err != nil {
			ev = log.Error().Err(err)
		}
		ev.Str("stream", streams.EventsStream).Msg("stream managed elsewhere (SEAM_EVENTS_MANAGE=false)")
		return nil
	}
	return lifecycle.Retry(ctx, 2*time.Second, func(ctx context.Context) error {
		// Named as such, rather than as the "no responders" of every
		// JetStream request to a server without it.
		if err := broker.CheckJetStream(ctx, nc, js); err != nil {
			return err
		}
		if err := streams.EnsureEventsStream(ctx, js, c.Stream); err != nil {
			return err
		}
		log.Info().Str("stream", streams.EventsStream).Int("replicas", c.Stream.Replicas).
			Str("max_age", c.Stream.MaxAge.String()).Str("duplicates", c.Stream.Duplicates.String()).Msg("stream ready")
		return nil
	}, func(err error) {
		if errors.Is(err, broker.ErrNoJetStream) {
			log.Error().Err(err).Msg("NATS has no JetStream; retrying")
			return
		}
		log.Warn().Err(err).Msg("stream not ready; retrying")
	})
}
