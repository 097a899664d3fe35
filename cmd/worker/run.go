package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/admin"
	"github.com/cardwire/cardwire/internal/broker"
	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/lifecycle"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/streams"
)

// run starts the worker and blocks until ctx is cancelled or a listener
// fails, then shuts down in reverse order: the API, the consumer (events in
// hand finish and are acked), the pending watch, NATS, the admin port.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if exit, err := lifecycle.ParseArgs("worker", args, stdout); exit {
		return err
	}

	env := &config.Env{Getenv: getenv}
	log := env.Logger(stdout).With().Str("service", "worker").Str("version", lifecycle.Version()).Logger()
	c := loadConfig(env)
	if err := errors.Join(env.Err(), c.validate()); err != nil {
		return err
	}

	reg := admin.NewRegistry()
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
	// Teardown runs newest first: API, consumer, pending watch, NATS, admin.
	stopper.OnStop("admin http", adminSrv.Shutdown)
	stopper.OnStop("nats", func(ctx context.Context) error { return broker.Drain(ctx, nc) })

	if !nc.IsConnected() {
		log.Info().Msg("waiting for NATS")
	}
	err = broker.WaitConnected(ctx, nc)
	var owned streams.Owned
	if err == nil {
		owned, err = prepareNATS(ctx, c, js, log)
	}
	if err != nil {
		if ctx.Err() != nil {
			return stopper.Stop(c.ShutdownTimeout) // asked to stop while starting
		}
		return fail(err)
	}
	bucket, cons := owned.Bucket, owned.Events
	if err := encoding.RegisterConsumerMetrics(cons, reg); err != nil {
		return fail(err)
	}

	svcLog := log.With().Str("component", "encoding").Logger()
	so := encoding.DefaultServiceOptions()
	so.Bucket, so.Publisher, so.Registerer, so.Log = bucket, js, reg, svcLog
	so.SkewMargin, so.EarlyTTL, so.ConfirmTimeout, so.DefaultWorkspaceID = c.SkewMargin, c.EarlyTTL, c.ConfirmTimeout, c.WorkspaceID
	so.OutcomeWindow = c.Owned.OutcomesDuplicates
	so.MaxAge, so.EnrichTimeout = c.MaxAge, c.EnrichTimeout
	if c.Seam.APIKey != "" {
		c.Seam.Registerer = reg
		client, err := seam.New(c.Seam)
		if err != nil {
			return fail(fmt.Errorf("SEAM_API_KEY / SEAM_API_URL: %w", err))
		}
		so.Seam = client
	} else {
		log.Warn().Msg("no SEAM_API_KEY: track-only mode (register encodings with their action_attempt_id; deadlines expire them)")
	}
	svc, err := encoding.NewService(so)
	if err != nil {
		return fail(err)
	}

	watchCtx, stopWatch := context.WithCancel(context.Background())
	if _, err := encoding.TrackPending(watchCtx, bucket, reg, svcLog); err != nil {
		stopWatch()
		return fail(err)
	}
	stopper.OnStop("pending watch", func(context.Context) error { stopWatch(); return nil })

	expiry, err := svc.CountUnmatched(ctx, js, svcLog)
	if err != nil {
		return fail(err)
	}
	stopper.OnStop("early expiry consumer", func(context.Context) error { expiry.Drain(); return nil })

	proc, err := encoding.NewProcessor(encoding.ProcessorOptions{
		Service: svc, Consumer: cons, Publisher: js, Log: log.With().Str("component", "processor").Logger(),
		MaxDeliver: c.Owned.MaxDeliver, Concurrency: c.Concurrency, HandleTimeout: c.HandleTimeout,
	})
	if err != nil {
		return fail(err)
	}
	if err := proc.Start(); err != nil {
		return fail(err)
	}
	stopper.OnStop("consumer", proc.Stop)
	timers, err := encoding.NewTimers(svc, owned.Timers, log.With().Str("component", "timers").Logger(), c.HandleTimeout)
	if err != nil {
		return fail(err)
	}
	if err := timers.Start(); err != nil {
		return fail(err)
	}
	stopper.OnStop("timers", timers.Stop)

	apiLog := log.With().Str("component", "api").Logger()
	apiHandler, err := encoding.Routes(encoding.APIOptions{
		Service: svc, Token: c.APIToken.Reveal(), Log: apiLog, MaxWait: c.MaxWait, MaxStream: c.MaxStream,
	})
	if err != nil {
		return fail(err)
	}
	apiServer := lifecycle.DefaultServerOptions()
	// Long polls (?wait=) and event streams outlive any fixed write timeout;
	// each handler bounds its own duration instead.
	apiServer.WriteTimeout = 0
	// Shutdown ends them at once rather than waiting out its whole budget.
	apiServer.CancelOnShutdown = true
	apiSrv, apiErr, err := lifecycle.Serve(c.APIAddr, apiHandler, apiServer, apiLog)
	if err != nil {
		return fail(fmt.Errorf("WORKER_API_ADDR: %w", err))
	}
	stopper.OnStop("api http", apiSrv.Shutdown)
	log.Info().Bool("api_auth", c.APIToken.Reveal() != "").Int("concurrency", c.Concurrency).Msg("worker started")

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

// prepareNATS creates or updates what
// the worker owns, retrying until SEAM_EVENTS exists (the receiver creates
// it) or ctx ends.
func prepareNATS(ctx context.Context, c cfg, js jetstream.JetStream, log zerolog.Logger) (streams.Owned, error) {
	var owned streams.Owned
	err := lifecycle.Retry(ctx, 2*time.Second, func(ctx context.Context) (err error) {
		owned, err = streams.EnsureWorker(ctx, js, c.Owned)
		return err
	}, func(err error) {
		log.Warn().Err(err).Msg("streams not ready (is the receiver up? it creates SEAM_EVENTS); retrying")
	})
	if err != nil {
		return streams.Owned{}, fmt.Errorf("prepare streams: %w", err)
	}
	log.Info().Str("bucket", streams.EncodingsBucket).Str("stream", streams.OutcomesStream).
		Str("consumer", streams.WorkerConsumer).Int("replicas", c.Owned.Replicas).Msg("streams ready")
	return owned, nil
}
