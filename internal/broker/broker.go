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
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Options configure Connect.
type Options struct {
	// URL is one or more comma-separated server URLs (nats://, tls://,
	// ws:// or wss://; CheckURLs); tls:// turns on TLS.
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
	case CheckURLs(o.URL) != nil:
		return fmt.Errorf("Options.URL: %w", CheckURLs(o.URL))
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
			log.Info().Str("server", RedactURL(nc.ConnectedUrl())).Msg("connected")
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // our own drain or close at shutdown: not news
			}
			log.Warn().Err(err).Msg("disconnected")
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			// Every failed attempt, so an operator sees why it is not ready;
			// the delay between attempts bounds the rate.
			log.Warn().Err(err).Str("servers", servers(nc)).Msg("reconnect failed; retrying")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", RedactURL(nc.ConnectedUrl())).Msg("reconnected")
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
		return nil, fmt.Errorf("nats connect %s: %w", RedactURLs(o.URL), err)
	}
	if !nc.IsConnected() {
		// The first round of attempts failed; the reconnect loop logs the
		// ones after it.
		log.Warn().Str("servers", servers(nc)).Msg("no NATS server reachable yet; retrying")
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

// servers lists the connection's server pool (configured and discovered),
// which nats.go keeps without credentials.
func servers(nc *nats.Conn) string { return strings.Join(nc.Servers(), ",") }

// schemes are the URL schemes a NATS client connects with.
var schemes = []string{"nats", "tls", "ws", "wss"}

// CheckURLs reports why s is not a comma-separated list of NATS server URLs,
// each nats://, tls://, ws:// or wss:// with a host (nats.go would take
// "garbage" for the host garbage and retry it for ever). Errors show the
// offending URL without its credentials.
func CheckURLs(s string) error {
	const want = "want a comma-separated list of nats://, tls://, ws:// or wss:// URLs such as nats://127.0.0.1:4222"
	if strings.TrimSpace(s) == "" {
		return errors.New(want + ", got nothing")
	}
	var ws, other bool
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return fmt.Errorf("%s, got an empty entry in %q", want, RedactURLs(s))
		}
		u, err := url.Parse(part)
		switch {
		case err != nil || !strings.Contains(part, "://"):
			return fmt.Errorf("%s, got %q", want, RedactURL(part))
		case !slices.Contains(schemes, strings.ToLower(u.Scheme)):
			return fmt.Errorf("%s, got scheme %s:// in %q", want, u.Scheme, RedactURL(part))
		case u.Hostname() == "":
			return fmt.Errorf("%s, got no host in %q", want, RedactURL(part))
		}
		if p := u.Port(); p != "" {
			if _, err := strconv.ParseUint(p, 10, 16); err != nil {
				return fmt.Errorf("%s, got port %q in %q", want, p, RedactURL(part))
			}
		}
		isWS := strings.HasPrefix(strings.ToLower(u.Scheme), "ws")
		ws, other = ws || isWS, other || !isWS
	}
	if ws && other {
		return fmt.Errorf("ws:// and wss:// URLs cannot be mixed with nats:// or tls:// ones, got %q", RedactURLs(s))
	}
	return nil
}

// RedactURL removes the credentials (user and password, or a token in the
// user name) from a server URL; one that does not parse keeps only what
// follows its last '@'.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		if i := strings.LastIndex(s, "@"); i >= 0 {
			return "…@" + s[i+1:]
		}
		return s
	case u.User == nil:
		return s
	}
	u.User = nil
	return u.String()
}

// RedactURLs is RedactURL on each of comma-separated URLs.
func RedactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = RedactURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// ErrNoJetStream is wrapped by CheckJetStream's error when the server, or
// the account the connection uses, has no JetStream.
var ErrNoJetStream = errors.New("no JetStream")

// CheckJetStream asks the server for the account's JetStream information,
// so that a server started without JetStream is named as such (every
// JetStream request to it would fail with "no responders").
func CheckJetStream(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error {
	_, err := js.AccountInfo(ctx)
	server := RedactURL(nc.ConnectedUrl())
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("%w for this account on the NATS server at %s: enable it for the account of NATS_CREDS_FILE's user", ErrNoJetStream, server)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w on the NATS server at %s: start nats-server with -js (or a jetstream {} block in its configuration)", ErrNoJetStream, server)
	}
	return fmt.Errorf("JetStream account info from %s: %w", server, err)
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
