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

// cfg is everything the worker reads from its environment. The README's
// configuration table lists the same variables.
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
