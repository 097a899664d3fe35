package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/admin"
	"github.com/cardwire/cardwire/internal/broker"
	"github.com/cardwire/cardwire/internal/catchup"
	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/lifecycle"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/worker"
	"github.com/cardwire/cardwire/internal/workspaces"
)

// run starts the worker and blocks until ctx is cancelled or a listener
// fails, then shuts down in reverse order: the API (long polls end, POSTs
// finish), the consumers (events and timers in hand finish and are acked,
// the outbox publishes what they stored), NATS, the admin port.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if exit, err := lifecycle.ParseArgs("worker", args, stdout, variables.Usage); exit {
		return err
	}

	env := &config.Env{Getenv: getenv}
	log := env.Logger(stdout).With().Str("service", "worker").Str("version", lifecycle.Version()).Str("commit", lifecycle.Commit()).Logger()
	c := loadConfig(env)
	if err := errors.Join(env.Err(), c.validate()); err != nil {
		return err
	}

	reg := admin.NewRegistry()
	dir, err := openWorkspaces(c, reg, log)
	if err != nil {
		return err
	}
	stopper := lifecycle.NewStopper(log.With().Str("component", "lifecycle").Logger())
	fail := func(err error) error { return errors.Join(err, stopper.Stop(c.ShutdownTimeout)) }

	nc, err := broker.Connect(c.NATS, log, reg)
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return err
	}

	adminLog := log.With().Str("component", "admin").Logger()
	adminHandler, err := admin.Handler(admin.Options{
		Gatherer: reg, CheckTimeout: time.Second, Log: adminLog,
		Checks: []admin.Check{
			{Name: "nats", Func: func(context.Context) error { return broker.Ready(nc) }},
			{Name: "consumer", Func: func(ctx context.Context) error {
				_, err := js.Consumer(ctx, streams.EventsStream, streams.WorkerConsumer)
				return err
			}},
		},
	})
	if err != nil {
		nc.Close()
		return err
	}
	adminSrv, adminErr, err := lifecycle.Serve(c.AdminAddr, adminHandler, lifecycle.DefaultServerOptions(), adminLog)
	if err != nil {
		nc.Close()
		return fmt.Errorf("ADMIN_ADDR: %w", err)
	}
	// Teardown runs newest first: API, consumers, NATS, admin.
	stopper.OnStop("admin http", adminSrv.Shutdown)
	stopper.OnStop("nats", func(ctx context.Context) error { return broker.Drain(ctx, nc) })

	if !nc.IsConnected() {
		log.Info().Msg("waiting for NATS")
	}
	err = broker.WaitConnected(ctx, nc)
	var owned streams.Owned
	var catchupKV jetstream.KeyValue
	if err == nil {
		owned, catchupKV, err = prepareNATS(ctx, c, nc, js, log)
	}
	if err != nil {
		if ctx.Err() != nil {
			return stopper.Stop(c.ShutdownTimeout) // asked to stop while starting
		}
		return fail(err)
	}
	wo := worker.DefaultOptions()
	wo.JS, wo.Owned, wo.Registerer, wo.Log = js, owned, reg, log
	wo.Limits = encoding.Limits{DefaultWorkspaceID: c.WorkspaceID, SkewMargin: c.SkewMargin, EarlyTTL: c.EarlyTTL,
		ConfirmTimeout: c.ConfirmTimeout, MaxAge: c.MaxAge}
	wo.OrderGrace, wo.EnrichTimeout = c.OrderGrace, c.EnrichTimeout
	wo.MaxDeliver, wo.Concurrency, wo.HandleTimeout, wo.AckWait = c.Owned.MaxDeliver, c.Concurrency, c.HandleTimeout, c.Owned.AckWait
	wo.API.Token, wo.API.MaxWait, wo.API.MaxStream, wo.API.MaxWaiters = c.APIToken.Reveal(), c.MaxWait, c.MaxStream, c.MaxWaiters
	wo.API.MaxInFlight = c.MaxInFlight
	if c.Seam.APIKey != "" || dir != nil {
		// With WORKSPACES_FILE this client has no credentials of its own:
		// each workspace's go through a client With them, sharing its
		// rate limit.
		c.Seam.Registerer = reg
		client, err := seam.New(c.Seam)
		if err != nil {
			return fail(fmt.Errorf("SEAM_API_KEY / SEAM_API_URL: %w", err))
		}
		wo.Seam = client
	} else {
		log.Warn().Msg("no SEAM_API_KEY: track-only mode (register encodings with their action_attempt_id; a webhook settles them, deadlines extend them until ENCODING_MAX_AGE)")
	}
	if dir != nil {
		wo.Workspaces = dir
		reloads, stopReloads := context.WithCancel(context.Background())
		defer stopReloads()
		go dir.Run(reloads)
	}
	w, err := worker.New(ctx, wo)
	if err != nil {
		return fail(err)
	}
	if err := w.Start(ctx); err != nil {
		return fail(errors.Join(err, w.Stop(context.Background())))
	}
	// Stopped after the API: registrations in flight finish first, then
	// intake, timers and the outbox drain.
	stopper.OnStop("consumers", w.Stop)
	if c.Catchup.Enabled {
		cu, err := newCatchup(c, js, catchupKV, dir, wo.Seam, reg, log)
		if err != nil {
			return fail(err)
		}
		if cu != nil {
			runs, stopRuns := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); cu.Run(runs) }()
			// Before the consumers: a run in progress ends, and the lease is
			// given up while NATS is still there.
			stopper.OnStop("catch-up", func(ctx context.Context) error {
				stopRuns()
				select {
				case <-done:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		}
	}

	apiLog := log.With().Str("component", "api").Logger()
	apiServer := lifecycle.DefaultServerOptions()
	// Long polls (?wait=) and event streams outlive any fixed write timeout;
	// each handler bounds its own duration instead, and EndWaits ends them
	// at shutdown while registrations finish.
	apiServer.WriteTimeout = 0
	apiSrv, apiErr, err := lifecycle.Serve(c.APIAddr, w.Handler(), apiServer, apiLog)
	if err != nil {
		return fail(fmt.Errorf("WORKER_API_ADDR: %w", err))
	}
	stopper.OnStop("api http", func(ctx context.Context) error {
		w.EndWaits()
		return apiSrv.Shutdown(ctx)
	})
	ev := log.Info().Bool("api_auth", c.APIToken.Reveal() != "" || dir != nil && !dir.Current().Open())
	if dir != nil {
		ev = ev.Str("workspaces_file", c.WorkspacesFile).Int("workspaces", len(dir.Current().IDs()))
	}
	ev.Int("concurrency", c.Concurrency).Msg("worker started")

	var runErr error
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down")
	case runErr = <-apiErr:
		log.Error().Err(runErr).Msg("api listener failed; shutting down")
	case runErr = <-adminErr:
		log.Error().Err(runErr).Msg("admin listener failed; shutting down")
	}
	return errors.Join(runErr, stopper.Stop(c.ShutdownTimeout))
}

// newCatchup builds the catch-up: every workspace of WORKSPACES_FILE with
// Seam credentials, or the single workspace of SEAM_API_KEY (which needs
// SEAM_WORKSPACE_ID: the checkpoint and the events are that workspace's).
// It returns nil when there is nothing to catch up on.
func newCatchup(c cfg, js jetstream.JetStream, kv jetstream.KeyValue, dir *workspaces.Source, client *seam.Client, reg prometheus.Registerer, log zerolog.Logger) (*catchup.Catchup, error) {
	o := catchup.DefaultOptions()
	o.Publisher, o.Bucket, o.Registerer = js, kv, reg
	o.Interval, o.Overlap, o.Lookback, o.EventTypes = c.Catchup.Interval, c.Catchup.Overlap, c.Catchup.Lookback, c.Catchup.EventTypes
	o.Log = log.With().Str("component", "catchup").Logger()
	host, _ := os.Hostname()
	o.Holder = host + "/" + uuid.NewString()
	switch {
	case client == nil:
		log.Info().Msg("catch-up off: no Seam credentials (track-only)")
		return nil, nil
	case dir != nil:
		o.Workspaces = func() []catchup.Workspace {
			cfg := dir.Current()
			var out []catchup.Workspace
			for _, id := range cfg.IDs() {
				cred, ok := cfg.Seam(id)
				if !ok {
					continue // track-only: nothing to ask Seam with
				}
				wc, err := client.With(seam.Credentials{APIKey: cred.APIKey.Reveal(), WorkspaceID: cred.Workspace})
				if err != nil {
					continue
				}
				w, _ := cfg.Workspace(id)
				out = append(out, catchup.Workspace{ID: id, Label: w.Label(), Seam: wc})
			}
			return out
		}
	case c.WorkspaceID == "":
		log.Warn().Msg("catch-up off: set SEAM_WORKSPACE_ID to the workspace of SEAM_API_KEY to catch up on its events")
		return nil, nil
	default:
		only := []catchup.Workspace{{ID: c.WorkspaceID, Label: "default", Seam: client}}
		o.Workspaces = func() []catchup.Workspace { return only }
	}
	cu, err := catchup.New(o)
	if err != nil {
		return nil, fmt.Errorf("CATCHUP_*: %w", err)
	}
	log.Info().Dur("interval", o.Interval).Dur("overlap", o.Overlap).Dur("lookback", o.Lookback).
		Int("event_types", len(o.EventTypes)).Msg("catch-up on (one worker runs it at a time)")
	return cu, nil
}

// openWorkspaces reads WORKSPACES_FILE, if set: a file that does not
// validate stops the start; on a reload it is refused and the last good
// one stays. A file whose api_tokens are empty (or emptied by a reload)
// is refused unless the API may serve without a token.
func openWorkspaces(c cfg, reg prometheus.Registerer, log zerolog.Logger) (*workspaces.Source, error) {
	if c.WorkspacesFile == "" {
		return nil, nil
	}
	wlog := log.With().Str("component", "workspaces").Logger()
	src, err := workspaces.Open(workspaces.SourceOptions{
		Path: c.WorkspacesFile, Interval: c.WorkspacesEvery, Registerer: reg, Log: wlog,
		Apply: func(cfg *workspaces.Config) error {
			if cfg.Open() && !c.APIOpenOK() {
				return fmt.Errorf("api_tokens is empty and WORKER_API_ADDR (%s) is not a loopback address: the API would serve without authentication (WORKER_API_INSECURE=true allows it)", c.APIAddr)
			}
			var trackOnly []string
			for _, id := range cfg.IDs() {
				if _, ok := cfg.Seam(id); !ok {
					w, _ := cfg.Workspace(id)
					trackOnly = append(trackOnly, w.Label())
				}
			}
			if len(trackOnly) > 0 {
				wlog.Warn().Strs("workspaces", trackOnly).Msg("workspaces without seam_api_key or seam_personal_access_token are track-only (their starts answer 501)")
			}
			return nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("WORKSPACES_FILE: %w", err)
	}
	return src, nil
}

// prepareNATS creates or updates what
// the worker owns, retrying until SEAM_EVENTS exists (the receiver creates
// it) or ctx ends.
func prepareNATS(ctx context.Context, c cfg, nc *nats.Conn, js jetstream.JetStream, log zerolog.Logger) (streams.Owned, jetstream.KeyValue, error) {
	var owned streams.Owned
	var kv jetstream.KeyValue
	err := lifecycle.Retry(ctx, 2*time.Second, func(ctx context.Context) (err error) {
		// Named as such, rather than as the "no responders" of every
		// JetStream request to a server without it.
		if err := broker.CheckJetStream(ctx, nc, js); err != nil {
			return err
		}
		if owned, err = streams.EnsureWorker(ctx, js, c.Owned); err != nil {
			return err
		}
		kv, err = streams.EnsureCatchup(ctx, js, c.Owned.Replicas)
		return err
	}, func(err error) {
		if errors.Is(err, broker.ErrNoJetStream) {
			log.Error().Err(err).Msg("NATS has no JetStream; retrying")
			return
		}
		log.Warn().Err(err).Msg("streams not ready (is the receiver up? it creates SEAM_EVENTS); retrying")
	})
	if err != nil {
		return streams.Owned{}, nil, fmt.Errorf("prepare streams: %w", err)
	}
	log.Info().Str("bucket", streams.EncodingsBucket).Str("stream", streams.OutcomesStream).
		Str("consumer", streams.WorkerConsumer).Int("replicas", c.Owned.Replicas).Msg("streams ready")
	return owned, kv, nil
}
