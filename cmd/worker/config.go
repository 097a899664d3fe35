package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/cardwire/cardwire/internal/broker"
	"github.com/cardwire/cardwire/internal/catchup"
	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/streams"
)

// variables is every variable the worker reads: -h prints it, and tests
// hold it against what loadConfig reads (names and defaults) and against
// the README's configuration table.
var variables = append(config.Vars{
	{Name: "NATS_URL", Default: "nats://127.0.0.1:4222", Help: "NATS server URLs, comma-separated: nats://, tls:// (TLS), ws:// or wss://"},
	{Name: "NATS_CREDS_FILE", Default: "", Help: "NATS .creds file (JWT and seed)"},
	{Name: "WORKER_API_ADDR", Default: ":8081", Help: "the /v1/encodings API"},
	{Name: "ADMIN_ADDR", Default: ":9091", Help: "admin listener: /metrics, /healthz, /readyz; never public"},
	{Name: "WORKER_API_TOKEN", Default: "", Help: "bearer token the API requires; required on a non-loopback address"},
	{Name: "WORKER_API_TOKEN_FILE", Default: "", Help: "file with WORKER_API_TOKEN"},
	{Name: "WORKER_API_INSECURE", Default: "false", Help: "allow a non-loopback API without a token"},
	{Name: "WORKER_API_MAX_WAIT", Default: "1m", Help: "longest ?wait="},
	{Name: "WORKER_API_MAX_STREAM", Default: "15m", Help: "longest Server-Sent Events stream"},
	{Name: "WORKER_API_MAX_WAITERS", Default: "10000", Help: "long polls and event streams open at once; beyond it, 429"},
	{Name: "WORKER_API_MAX_IN_FLIGHT", Default: "256", Help: "other API requests served at once; beyond it, 429"},
	{Name: "WORKSPACES_FILE", Default: "", Help: "JSON or YAML file of workspaces: Seam credentials and API tokens (replaces SEAM_API_KEY, SEAM_WORKSPACE_ID, WORKER_API_TOKEN)"},
	{Name: "WORKSPACES_RELOAD_INTERVAL", Default: "10s", Help: "how often WORKSPACES_FILE is read again"},
	{Name: "SEAM_API_KEY", Default: "", Help: "Seam API key (seam_...) or personal access token (seam_at..., with SEAM_WORKSPACE_ID); unset: track-only"},
	{Name: "SEAM_API_KEY_FILE", Default: "", Help: "file with SEAM_API_KEY"},
	{Name: "SEAM_WORKSPACE_ID", Default: "", Help: "workspace for requests that name none; the seam-workspace header with a personal access token"},
	{Name: "SEAM_API_URL", Default: "https://connect.getseam.com", Help: "Seam's base URL (https://, or http:// to a loopback address)"},
	{Name: "SEAM_API_TIMEOUT", Default: "10s", Help: "bound on one Seam request"},
	{Name: "SEAM_MAX_RPS", Default: "10", Help: "requests per second sent to Seam, all endpoints together"},
	{Name: "ENCODING_SKEW_MARGIN", Default: "30s", Help: "how much earlier than the request a success may have occurred and still confirm it"},
	{Name: "ENCODING_EARLY_TTL", Default: "10m", Help: "how long an event that came before its encoding is kept"},
	{Name: "ENCODING_ORDER_GRACE", Default: "5s", Help: "how long a failure-type event waits before it is applied"},
	{Name: "ENCODING_CONFIRM_TIMEOUT", Default: "1m", Help: "the first deadline of each encoding: when Seam is asked if no webhook came"},
	{Name: "ENCODING_MAX_AGE", Default: "15m", Help: "how long a still-pending encoding is extended before it expires"},
	{Name: "ENCODING_ENRICH_TIMEOUT", Default: "2s", Help: "bound on the card-number fetch before an issued outcome"},
	{Name: "ENCODINGS_REPLICAS", Default: "1", Help: "replicas of the ENCODINGS and ENCODINGS_PENDING buckets and the ENCODING_EVENTS stream (3 in production)"},
	{Name: "ENCODINGS_RECORD_TTL", Default: "720h", Help: "how long records and their index keys live"},
	{Name: "ENCODING_EVENTS_MAX_AGE", Default: "168h", Help: "how long outcome messages are kept"},
	{Name: "ENCODING_EVENTS_DUPLICATE_WINDOW", Default: "30m", Help: "dedupe window of outcome messages"},
	{Name: "WORKER_ACK_WAIT", Default: "30s", Help: "an event not acknowledged in this time is redelivered"},
	{Name: "WORKER_MAX_DELIVER", Default: "8", Help: "deliveries before an event is dead-lettered"},
	{Name: "WORKER_CONCURRENCY", Default: "32", Help: "events handled at once (timers: 4x as many)"},
	{Name: "WORKER_HANDLE_TIMEOUT", Default: "10s", Help: "bound on handling one event; below WORKER_ACK_WAIT"},
	{Name: "CATCHUP_ENABLED", Default: "true", Help: "catch up from Seam's event log"},
	{Name: "CATCHUP_INTERVAL", Default: "5m", Help: "how often the lease holder catches up (at least 1s)"},
	{Name: "CATCHUP_OVERLAP", Default: "2m", Help: "how far before its checkpoint each run starts"},
	{Name: "CATCHUP_LOOKBACK", Default: "24h", Help: "how far back a workspace's first run looks"},
	{Name: "CATCHUP_EVENT_TYPES", Default: "", Help: "comma-separated event types to list, or * for all (unset: the nine cardwire acts on)"},
	{Name: "SHUTDOWN_TIMEOUT", Default: "25s", Help: "bound on the whole shutdown; keep it below the pod's grace period"},
}, config.LogVars...)

// cfg is everything the worker reads from its environment (variables).
type cfg struct {
	NATS            broker.Options
	AdminAddr       string
	APIAddr         string
	APIToken        config.Secret
	APIInsecure     bool
	WorkspaceID     string
	WorkspacesFile  string
	WorkspacesEvery time.Duration
	SkewMargin      time.Duration
	EarlyTTL        time.Duration
	OrderGrace      time.Duration
	ConfirmTimeout  time.Duration
	MaxAge          time.Duration
	EnrichTimeout   time.Duration
	Seam            seam.Options
	MaxWait         time.Duration
	MaxStream       time.Duration
	MaxWaiters      int
	MaxInFlight     int
	Owned           streams.WorkerOptions
	Concurrency     int
	Catchup         catchupCfg
	HandleTimeout   time.Duration
	ShutdownTimeout time.Duration
}

func loadConfig(env *config.Env) cfg {
	c := cfg{NATS: broker.DefaultOptions(), Owned: streams.DefaultWorkerOptions()}
	c.NATS.Name = "cardwire-worker"
	c.NATS.URL = env.String("NATS_URL", c.NATS.URL)
	c.NATS.CredsFile = env.String("NATS_CREDS_FILE", "")
	c.AdminAddr = env.String("ADMIN_ADDR", ":9091")
	c.APIAddr = env.String("WORKER_API_ADDR", ":8081")
	c.APIToken = env.Secret("WORKER_API_TOKEN")
	c.APIInsecure = env.Bool("WORKER_API_INSECURE", false)
	c.WorkspaceID = env.String("SEAM_WORKSPACE_ID", "")
	c.WorkspacesFile = env.String("WORKSPACES_FILE", "")
	c.WorkspacesEvery = env.Duration("WORKSPACES_RELOAD_INTERVAL", 10*time.Second)
	c.SkewMargin = env.Duration("ENCODING_SKEW_MARGIN", 30*time.Second)
	c.EarlyTTL = env.Duration("ENCODING_EARLY_TTL", 10*time.Minute)
	c.OrderGrace = env.Duration("ENCODING_ORDER_GRACE", 5*time.Second)
	c.ConfirmTimeout = env.Duration("ENCODING_CONFIRM_TIMEOUT", time.Minute)
	c.MaxAge = env.Duration("ENCODING_MAX_AGE", 15*time.Minute)
	c.EnrichTimeout = env.Duration("ENCODING_ENRICH_TIMEOUT", 2*time.Second)
	c.Seam = seam.DefaultOptions()
	c.Seam.APIKey = env.Secret("SEAM_API_KEY").Reveal()
	c.Seam.BaseURL = env.String("SEAM_API_URL", seam.DefaultURL)
	c.Seam.Timeout = env.Duration("SEAM_API_TIMEOUT", c.Seam.Timeout)
	c.Seam.MaxRPS = float64(env.Int("SEAM_MAX_RPS", int(c.Seam.MaxRPS)))
	c.Seam.Burst = max(int(c.Seam.MaxRPS), 1)
	// A personal access token names its workspace in a header.
	if c.Seam.APIKey != "" && seam.IsPersonalAccessToken(c.Seam.APIKey) {
		c.Seam.WorkspaceID = env.String("SEAM_WORKSPACE_ID", "")
	}
	c.MaxWait = env.Duration("WORKER_API_MAX_WAIT", time.Minute)
	c.MaxStream = env.Duration("WORKER_API_MAX_STREAM", 15*time.Minute)
	c.MaxWaiters = env.Int("WORKER_API_MAX_WAITERS", 10000)
	c.MaxInFlight = env.Int("WORKER_API_MAX_IN_FLIGHT", 256)
	c.Owned.Replicas = env.Int("ENCODINGS_REPLICAS", c.Owned.Replicas)
	c.Owned.RecordTTL = env.Duration("ENCODINGS_RECORD_TTL", c.Owned.RecordTTL)
	c.Owned.OutcomesMaxAge = env.Duration("ENCODING_EVENTS_MAX_AGE", c.Owned.OutcomesMaxAge)
	c.Owned.OutcomesDuplicates = env.Duration("ENCODING_EVENTS_DUPLICATE_WINDOW", c.Owned.OutcomesDuplicates)
	c.Owned.AckWait = env.Duration("WORKER_ACK_WAIT", c.Owned.AckWait)
	c.Owned.MaxDeliver = env.Int("WORKER_MAX_DELIVER", c.Owned.MaxDeliver)
	c.Concurrency = env.Int("WORKER_CONCURRENCY", 32)
	c.Catchup = loadCatchup(env)
	c.HandleTimeout = env.Duration("WORKER_HANDLE_TIMEOUT", 10*time.Second)
	c.ShutdownTimeout = env.Duration("SHUTDOWN_TIMEOUT", 25*time.Second)
	return c
}

// validate checks what the packages cannot: errors name the variable.
func (c cfg) validate() error {
	if err := broker.CheckURLs(c.NATS.URL); err != nil {
		return fmt.Errorf("NATS_URL: %w", err)
	}
	if c.WorkspacesFile != "" {
		for _, v := range []struct {
			name string
			set  bool
		}{
			{"SEAM_API_KEY (or SEAM_API_KEY_FILE)", c.Seam.APIKey != ""},
			{"SEAM_WORKSPACE_ID", c.WorkspaceID != ""},
			{"WORKER_API_TOKEN (or WORKER_API_TOKEN_FILE)", c.APIToken.Reveal() != ""},
		} {
			if v.set {
				return fmt.Errorf("at most one of WORKSPACES_FILE and %s may be set: with WORKSPACES_FILE each workspace's Seam credentials and the API tokens are in the file", v.name)
			}
		}
	}
	if c.WorkspacesFile == "" && c.APIToken.Reveal() == "" && !c.APIOpenOK() {
		return fmt.Errorf("WORKER_API_TOKEN (or WORKER_API_TOKEN_FILE) must be set when WORKER_API_ADDR (%s) is not a loopback address; set WORKER_API_INSECURE=true to serve the API without authentication", c.APIAddr)
	}
	if err := c.Owned.Validate(); err != nil {
		return fmt.Errorf("ENCODINGS_REPLICAS, ENCODINGS_RECORD_TTL, ENCODING_EVENTS_* or WORKER_ACK_WAIT/WORKER_MAX_DELIVER: %w", err)
	}
	if c.HandleTimeout >= c.Owned.AckWait {
		return errors.New("WORKER_HANDLE_TIMEOUT must be shorter than WORKER_ACK_WAIT, or events are redelivered while still being handled")
	}
	if c.MaxAge < c.ConfirmTimeout {
		return errors.New("ENCODING_MAX_AGE must not be shorter than ENCODING_CONFIRM_TIMEOUT")
	}
	if c.Seam.APIKey != "" && seam.IsPersonalAccessToken(c.Seam.APIKey) && c.Seam.WorkspaceID == "" {
		return errors.New("SEAM_WORKSPACE_ID must be set with a personal access token in SEAM_API_KEY (it is sent as the seam-workspace header)")
	}
	if c.Seam.APIKey != "" || c.WorkspacesFile != "" {
		if err := seam.CheckBaseURL(c.Seam.BaseURL); err != nil {
			return fmt.Errorf("SEAM_API_URL: %w", err)
		}
	}
	if c.Seam.MaxRPS < 1 {
		return errors.New("SEAM_MAX_RPS must be at least 1")
	}
	if c.EarlyTTL < time.Second {
		return errors.New("ENCODING_EARLY_TTL must be at least 1s")
	}
	return nil
}

// catchupCfg configures the catch-up from Seam's event log.
type catchupCfg struct {
	Enabled                     bool
	Interval, Overlap, Lookback time.Duration
	// EventTypes nil: every type.
	EventTypes []string
}

func loadCatchup(env *config.Env) catchupCfg {
	d := catchup.DefaultOptions()
	c := catchupCfg{
		Enabled:  env.Bool("CATCHUP_ENABLED", true),
		Interval: env.Duration("CATCHUP_INTERVAL", d.Interval),
		Overlap:  env.Duration("CATCHUP_OVERLAP", d.Overlap),
		Lookback: env.Duration("CATCHUP_LOOKBACK", d.Lookback),
	}
	switch types := env.String("CATCHUP_EVENT_TYPES", ""); types {
	case "":
		c.EventTypes = d.EventTypes
	case "*":
	default:
		for t := range strings.SplitSeq(types, ",") {
			if t = strings.TrimSpace(t); t != "" {
				c.EventTypes = append(c.EventTypes, t)
			}
		}
	}
	return c
}

// APIOpenOK reports whether the API may serve without a token: on a
// loopback address, or when WORKER_API_INSECURE says so.
func (c cfg) APIOpenOK() bool { return c.APIInsecure || loopback(c.APIAddr) }

// loopback reports whether addr only listens on a loopback interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
