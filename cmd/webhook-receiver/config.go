package main

import (
	"fmt"
	"time"

	"github.com/cardwire/cardwire/internal/broker"
	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/lifecycle"
	"github.com/cardwire/cardwire/internal/streams"
)

// variables is every variable the receiver reads: -h prints it, and tests
// hold it against what loadConfig reads (names and defaults) and against
// the README's configuration table.
var variables = append(config.Vars{
	{Name: "NATS_URL", Default: "nats://127.0.0.1:4222", Help: "NATS server URLs, comma-separated: nats://, tls:// (TLS), ws:// or wss://"},
	{Name: "NATS_CREDS_FILE", Default: "", Help: "NATS .creds file (JWT and seed)"},
	{Name: "RECEIVER_ADDR", Default: ":8080", Help: "public listener: POST /webhooks/seam only"},
	{Name: "ADMIN_ADDR", Default: ":9090", Help: "admin listener: /metrics, /healthz, /readyz; never public"},
	{Name: "SEAM_WEBHOOK_SECRET", Default: "", Help: "the endpoint's whsec_ secret(s), comma-separated for rotation (or WORKSPACES_FILE)"},
	{Name: "SEAM_WEBHOOK_SECRET_FILE", Default: "", Help: "file with the secret(s), one per line or comma-separated"},
	{Name: "WORKSPACES_FILE", Default: "", Help: "JSON or YAML file of workspaces, each with its webhook secrets (replaces SEAM_WEBHOOK_SECRET)"},
	{Name: "WORKSPACES_RELOAD_INTERVAL", Default: "10s", Help: "how often WORKSPACES_FILE is read again"},
	{Name: "SEAM_WEBHOOK_TOLERANCE", Default: "5m", Help: "how far svix-timestamp may be from now, either way"},
	{Name: "RECEIVER_MAX_BODY_BYTES", Default: "262144", Help: "largest accepted body; with 4 KiB of headers it must fit the NATS max_payload"},
	{Name: "RECEIVER_PUBLISH_TIMEOUT", Default: "5s", Help: "longest wait for a PubAck before answering 503 (below Svix's 15s)"},
	{Name: "RECEIVER_MAX_IN_FLIGHT", Default: "1024", Help: "requests handled at once; beyond it, 429"},
	{Name: "RECEIVER_RETRY_AFTER", Default: "5s", Help: "Retry-After sent with 429 and 503"},
	{Name: "SEAM_EVENTS_MANAGE", Default: "true", Help: "create or update the SEAM_EVENTS stream at start-up"},
	{Name: "SEAM_EVENTS_REPLICAS", Default: "1", Help: "SEAM_EVENTS replicas (3 on a production cluster)"},
	{Name: "SEAM_EVENTS_MAX_AGE", Default: "168h", Help: "how long events are kept"},
	{Name: "SEAM_EVENTS_DUPLICATE_WINDOW", Default: "1h", Help: "dedupe window on the message id evt:<event_id>"},
	{Name: "SHUTDOWN_TIMEOUT", Default: "25s", Help: "bound on the whole shutdown; keep it below the pod's grace period"},
}, config.LogVars...)

// cfg is everything the receiver reads from its environment (variables).
type cfg struct {
	NATS            broker.Options
	AdminAddr       string
	ReceiverAddr    string
	Secrets         []config.Secret
	SecretsFrom     string
	WorkspacesFile  string
	WorkspacesEvery time.Duration
	Tolerance       time.Duration
	Receiver        events.Options
	Server          lifecycle.ServerOptions
	Stream          streams.EventsStreamOptions
	ManageStream    bool
	ShutdownTimeout time.Duration
}

func loadConfig(env *config.Env) cfg {
	c := cfg{
		NATS:     broker.DefaultOptions(),
		Receiver: events.DefaultOptions(),
		Server:   lifecycle.DefaultServerOptions(),
		Stream:   streams.DefaultEventsStreamOptions(),
	}
	c.NATS.Name = "cardwire-webhook-receiver"
	c.NATS.URL = env.String("NATS_URL", c.NATS.URL)
	c.NATS.CredsFile = env.String("NATS_CREDS_FILE", "")
	c.AdminAddr = env.String("ADMIN_ADDR", ":9090")
	c.ReceiverAddr = env.String("RECEIVER_ADDR", ":8080")
	c.Secrets = env.Secrets("SEAM_WEBHOOK_SECRET")
	c.SecretsFrom = "SEAM_WEBHOOK_SECRET"
	if env.String("SEAM_WEBHOOK_SECRET_FILE", "") != "" {
		c.SecretsFrom = "SEAM_WEBHOOK_SECRET_FILE"
	}
	c.WorkspacesFile = env.String("WORKSPACES_FILE", "")
	c.WorkspacesEvery = env.Duration("WORKSPACES_RELOAD_INTERVAL", 10*time.Second)
	c.Tolerance = env.Duration("SEAM_WEBHOOK_TOLERANCE", 5*time.Minute)
	c.Receiver.MaxBodyBytes = int64(env.Int("RECEIVER_MAX_BODY_BYTES", int(c.Receiver.MaxBodyBytes)))
	c.Receiver.PublishTimeout = env.Duration("RECEIVER_PUBLISH_TIMEOUT", c.Receiver.PublishTimeout)
	c.Receiver.MaxInFlight = env.Int("RECEIVER_MAX_IN_FLIGHT", c.Receiver.MaxInFlight)
	c.Receiver.RetryAfter = env.Duration("RECEIVER_RETRY_AFTER", c.Receiver.RetryAfter)
	c.Stream.Replicas = env.Int("SEAM_EVENTS_REPLICAS", c.Stream.Replicas)
	c.Stream.MaxAge = env.Duration("SEAM_EVENTS_MAX_AGE", c.Stream.MaxAge)
	c.Stream.Duplicates = env.Duration("SEAM_EVENTS_DUPLICATE_WINDOW", c.Stream.Duplicates)
	c.ManageStream = env.Bool("SEAM_EVENTS_MANAGE", true)
	c.ShutdownTimeout = env.Duration("SHUTDOWN_TIMEOUT", 25*time.Second)
	return c
}

// validate checks what the packages cannot: errors name the variable.
func (c cfg) validate() error {
	if err := broker.CheckURLs(c.NATS.URL); err != nil {
		return fmt.Errorf("NATS_URL: %w", err)
	}
	if c.WorkspacesFile != "" && len(c.Secrets) > 0 {
		return fmt.Errorf("at most one of WORKSPACES_FILE and %s may be set: with WORKSPACES_FILE each workspace's webhook_secrets are in the file", c.SecretsFrom)
	}
	if c.WorkspacesFile == "" && len(c.Secrets) == 0 {
		// Fail closed: without a secret every request would be rejected, or
		// worse, accepted.
		return fmt.Errorf("SEAM_WEBHOOK_SECRET or SEAM_WEBHOOK_SECRET_FILE must be set to the endpoint's whsec_… secret (comma-separated for rotation), or WORKSPACES_FILE for several workspaces")
	}
	if c.Receiver.PublishTimeout >= 15*time.Second {
		return fmt.Errorf("RECEIVER_PUBLISH_TIMEOUT must be below Svix's 15s answer window, got %s", c.Receiver.PublishTimeout)
	}
	if err := c.Stream.Validate(); err != nil {
		return fmt.Errorf("SEAM_EVENTS_REPLICAS, SEAM_EVENTS_MAX_AGE or SEAM_EVENTS_DUPLICATE_WINDOW: %w", err)
	}
	return nil
}
