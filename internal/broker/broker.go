// Package broker owns the NATS connection: it connects with credentials and
// TLS as configured, reconnects forever, reports the connection state as a
// metric and a log line, and answers readiness. The caller drains the
// connection on shutdown.
package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Options configure Connect.
type Options struct {
	// URL is one or more comma-separated server URLs; tls:// turns on TLS.
	URL string
	// CredsFile is a NATS .creds file (JWT + nkey seed), optional.
	CredsFile string
	// Name identifies the client in the server's monitoring.
	Name string
	// ReconnectWait is the first pause between reconnect attempts; it
	// doubles on every failed attempt up to MaxReconnectWait (jitter added).
	ReconnectWait    time.Duration
	MaxReconnectWait time.Duration
	// ConnectTimeout bounds one dial.
	ConnectTimeout time.Duration
	// DrainTimeout bounds Drain on shutdown.
	DrainTimeout time.Duration
}

// DefaultOptions returns options for a local server.
func DefaultOptions() Options {
	return Options{
		URL:              nats.DefaultURL,
		ReconnectWait:    500 * time.Millisecond,
		MaxReconnectWait: 30 * time.Second,
		ConnectTimeout:   2 * time.Second,
		DrainTimeout:     10 * time.Second,
	}
}

// Validate reports the first option that cannot work.
func (o Options) Validate() error {
	switch {
	case o.URL == "":
		return errors.New("Options.URL must be set")
	case o.Name == "":
		return errors.New("Options.Name must be set")
	case o.ReconnectWait <= 0 || o.ConnectTimeout <= 0 || o.DrainTimeout <= 0:
		return errors.New("Options.ReconnectWait, ConnectTimeout and DrainTimeout must be positive")
	case o.MaxReconnectWait < o.ReconnectWait:
		return errors.New("Options.MaxReconnectWait must not be below ReconnectWait")
	}
	return nil
}

// Connect returns a connection that keeps reconnecting for ever. It does not
// wait for the first connection to succeed: a server that is not up yet is
// retried in the background, and readiness (Ready) says when it is. It
// registers cardwire_nats_connected on reg.
//
// Publishing while disconnected fails at once (no reconnect buffer) so that
// callers can answer "unavailable" instead of holding the message in memory.
func Connect(o Options, log zerolog.Logger, reg prometheus.Registerer) (*nats.Conn, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	log = log.With().Str("component", "nats").Logger()
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			d := o.ReconnectWait << min(attempts, 16)
			d = min(d, o.MaxReconnectWait)
			// Up to 25% jitter so a fleet does not reconnect in step.
			return d - time.Duration(rand.Int64N(int64(d/4)+1))
		}),
		nats.Timeout(o.ConnectTimeout),
		nats.DrainTimeout(o.DrainTimeout),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("connected")
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().Err(err).Msg("disconnected")
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			// Every failed attempt, so an operator sees why it is not ready;
			// the delay between attempts bounds the rate.
			log.Warn().Err(err).Str("servers", redactedServers(nc)).Msg("reconnect failed; retrying")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Error().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("async error")
		}),
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect: %w", err)
	}
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cardwire_nats_connected",
		Help: "1 while the NATS connection is up, 0 otherwise.",
	}, func() float64 {
		if nc.IsConnected() {
			return 1
		}
		return 0
	})
	if err := reg.Register(connected); err != nil {
		nc.Close()
		return nil, fmt.Errorf("register nats metrics: %w", err)
	}
	return nc, nil
}

func redactedServers(nc *nats.Conn) string {
	if u := nc.ConnectedUrlRedacted(); u != "" {
		return u
	}
	return fmt.Sprint(len(nc.Servers())) + " configured"
}

// ErrNotConnected is returned by Ready while the connection is down.
var ErrNotConnected = errors.New("nats: not connected")

// Ready reports ErrNotConnected unless nc is connected.
func Ready(nc *nats.Conn) error {
	if !nc.IsConnected() {
		return fmt.Errorf("%w (status %s)", ErrNotConnected, nc.Status())
	}
	return nil
}

// Drain drains nc and waits until it is closed or ctx ends.
func Drain(ctx context.Context, nc *nats.Conn) error {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		// Not connected (reconnecting): nothing to drain, just close.
		nc.Close()
		return nil
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		nc.Close()
		return fmt.Errorf("nats drain: %w", ctx.Err())
	}
}

// WaitConnected returns once nc is connected, or ctx's error.
func WaitConnected(ctx context.Context, nc *nats.Conn) error {
	ch := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(ch)
	if nc.IsConnected() {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for nats: %w", ctx.Err())
	}
}
