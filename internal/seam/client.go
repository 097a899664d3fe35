package seam

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/time/rate"
)

// DefaultURL is Seam Connect's base URL.
const DefaultURL = "https://connect.getseam.com"

// Options configure a Client.
type Options struct {
	// BaseURL defaults to DefaultURL.
	BaseURL string
	// APIKey is a Seam API key (seam_…) or a personal access token. A
	// client without one only makes clients With credentials (one per
	// workspace); its own requests fail with ErrNoAPIKey.
	APIKey string
	// WorkspaceID, when set, is sent as the seam-workspace header, which a
	// personal access token needs.
	WorkspaceID string
	// Timeout bounds one HTTP request.
	Timeout time.Duration
	// MaxRetries bounds retries of a read (never of an encode).
	MaxRetries int
	// RetryBase is the first retry delay; it doubles, with jitter.
	RetryBase time.Duration
	// MaxRPS bounds the requests per second this client sends (every
	// endpoint together, SEAM_MAX_RPS); Burst is how many may go at once.
	MaxRPS float64
	Burst  int
	// HTTPClient defaults to a client whose transport keeps enough idle
	// connections to Seam for MaxRPS, with no timeout of its own.
	HTTPClient *http.Client
	Registerer prometheus.Registerer
}

// DefaultOptions returns the documented defaults; Registerer (and, unless
// every request goes through With, APIKey) must still be set.
func DefaultOptions() Options {
	return Options{BaseURL: DefaultURL, Timeout: 10 * time.Second, MaxRetries: 2, RetryBase: 200 * time.Millisecond,
		MaxRPS: 10, Burst: 10}
}

// Validate reports the first option that cannot work.
func (o Options) Validate() error {
	switch {
	case o.Registerer == nil:
		return errors.New("Options.Registerer must be set")
	case o.Timeout <= 0:
		return errors.New("Options.Timeout must be positive")
	case o.MaxRetries < 0:
		return errors.New("Options.MaxRetries must not be negative")
	case o.RetryBase <= 0:
		return errors.New("Options.RetryBase must be positive")
	case o.MaxRPS <= 0 || o.Burst < 1:
		return errors.New("Options.MaxRPS and Burst must be positive")
	}
	return CheckBaseURL(o.BaseURL)
}

// CheckBaseURL refuses a base URL that would send the API key in clear
// text: https, or http only to a loopback address (the simulator, a local
// proxy).
func CheckBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("Options.BaseURL %q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("Options.BaseURL %q must be https:// (http:// only to a loopback address): the API key would travel in clear text", raw)
}

// Client calls Seam. Every request waits for the rate limiter, and a 429
// with Retry-After pauses every caller of the client, not only the one
// that got it, so that a burst of due deadlines cannot retry in lockstep.
type Client struct {
	o       Options
	base    string
	http    *http.Client
	limiter *rate.Limiter
	// paused is the unix nanoseconds until which Seam asked these
	// credentials to wait.
	paused   *atomic.Int64
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	waited   prometheus.Histogram
}

// New validates o and registers the client's metrics.
func New(o Options) (*Client, error) {
	if o.BaseURL == "" {
		o.BaseURL = DefaultURL
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	hc := o.HTTPClient
	if hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = max(int(o.MaxRPS), o.Burst, 2)
		hc = &http.Client{Transport: t}
	}
	f := promauto.With(o.Registerer)
	return &Client{
		o: o, base: strings.TrimRight(o.BaseURL, "/"), http: hc, limiter: rate.NewLimiter(rate.Limit(o.MaxRPS), o.Burst),
		paused: new(atomic.Int64),
		waited: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "cardwire_seam_rate_wait_seconds",
			Help:    "Time a Seam request waited for the client's rate limit (SEAM_MAX_RPS) or a Retry-After pause.",
			Buckets: []float64{.001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "cardwire_seam_requests_total",
			Help: "Seam API requests by endpoint and HTTP status (error when no answer came).",
		}, []string{"endpoint", "status"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cardwire_seam_request_duration_seconds",
			Help:    "Seam API request duration by endpoint.",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
	}, nil
}

// Credentials are what a request is authorized with: an API key (seam_…,
// scoped to its workspace) or a personal access token with the workspace
// it acts in (the seam-workspace header).
type Credentials struct {
	APIKey      string
	WorkspaceID string
}

// Credentials returns the client's credentials.
func (c *Client) Credentials() Credentials {
	return Credentials{APIKey: c.o.APIKey, WorkspaceID: c.o.WorkspaceID}
}

// With returns a client that sends cred instead, sharing this one's rate
// limit (SEAM_MAX_RPS is for the process, however many workspaces it
// serves), transport and metrics. A 429's pause is the new client's own:
// Seam limits each workspace on its own.
func (c *Client) With(cred Credentials) (*Client, error) {
	if cred.APIKey == "" {
		return nil, ErrNoAPIKey
	}
	n := *c
	n.o.APIKey, n.o.WorkspaceID = cred.APIKey, cred.WorkspaceID
	n.paused = new(atomic.Int64)
	return &n, nil
}

// EncodeCredential starts encoding a credential (or an access method) onto
// a card: POST /acs/encoders/encode_credential. It is never retried; on an
// error wrapping ErrUnavailable the encode may have started.
func (c *Client) EncodeCredential(ctx context.Context, req EncodeRequest) (ActionAttempt, error) {
	var out struct {
		ActionAttempt ActionAttempt `json:"action_attempt"`
	}
	err := c.call(ctx, "/acs/encoders/encode_credential", req, &out, false)
	return out.ActionAttempt, err
}

// EncodeAccessMethod starts encoding an access method: POST
// /access_methods/encode. Never retried, like EncodeCredential.
func (c *Client) EncodeAccessMethod(ctx context.Context, acsEncoderID, accessMethodID string) (ActionAttempt, error) {
	var out struct {
		ActionAttempt ActionAttempt `json:"action_attempt"`
	}
	err := c.call(ctx, "/access_methods/encode", EncodeRequest{AcsEncoderID: acsEncoderID, AccessMethodID: accessMethodID}, &out, false)
	return out.ActionAttempt, err
}

// GetActionAttempt reads one action attempt.
func (c *Client) GetActionAttempt(ctx context.Context, id string) (ActionAttempt, error) {
	var out struct {
		ActionAttempt ActionAttempt `json:"action_attempt"`
	}
	err := c.call(ctx, "/action_attempts/get", map[string]string{"action_attempt_id": id}, &out, true)
	return out.ActionAttempt, err
}

// ListActionAttempts reads several action attempts in one call.
func (c *Client) ListActionAttempts(ctx context.Context, ids []string) ([]ActionAttempt, error) {
	var out struct {
		ActionAttempts []ActionAttempt `json:"action_attempts"`
	}
	err := c.call(ctx, "/action_attempts/list", map[string]any{"action_attempt_ids": ids}, &out, true)
	return out.ActionAttempts, err
}

// GetCredential reads one credential.
func (c *Client) GetCredential(ctx context.Context, id string) (Credential, error) {
	var out struct {
		AcsCredential Credential `json:"acs_credential"`
	}
	err := c.call(ctx, "/acs/credentials/get", map[string]string{"acs_credential_id": id}, &out, true)
	return out.AcsCredential, err
}

// ListEncoders reads encoders (one page).
func (c *Client) ListEncoders(ctx context.Context, req ListEncodersRequest) ([]Encoder, Pagination, error) {
	var out struct {
		AcsEncoders []Encoder  `json:"acs_encoders"`
		Pagination  Pagination `json:"pagination"`
	}
	err := c.call(ctx, "/acs/encoders/list", req, &out, true)
	return out.AcsEncoders, out.Pagination, err
}

// call POSTs body to path and decodes the success envelope into out.
// retry allows retries (reads only).
func (c *Client) call(ctx context.Context, path string, body, out any, retry bool) error {
	payload, err := json.Marshal(body)
	if err != nil {
		return err
	}
	attempts := 1
	if retry {
		attempts += c.o.MaxRetries
	}
	var last error
	for attempt := range attempts {
		wait, err := c.once(ctx, path, payload, out)
		if err == nil {
			return nil
		}
		last = err
		var apiErr *APIError
		temporary := errors.Is(err, ErrUnavailable) || errors.As(err, &apiErr) && apiErr.Temporary()
		if !temporary || attempt == attempts-1 || ctx.Err() != nil {
			break
		}
		if wait <= 0 {
			d := c.o.RetryBase << attempt
			wait = d/2 + rand.N(d/2+1) // jitter: half fixed, half random
		}
		select {
		case <-ctx.Done():
			return errors.Join(last, ctx.Err())
		case <-time.After(wait):
		}
	}
	return last
}

// admit waits for a Retry-After pause to end and for the rate limiter.
func (c *Client) admit(ctx context.Context) error {
	start := time.Now()
	defer func() { c.waited.Observe(time.Since(start).Seconds()) }()
	if until := time.Unix(0, c.paused.Load()); time.Now().Before(until) {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting out Seam's Retry-After: %w", ErrUnavailable, ctx.Err())
		case <-t.C:
		}
	}
	if err := c.limiter.Wait(ctx); err != nil {
		return fmt.Errorf("%w: waiting for the rate limit (SEAM_MAX_RPS): %w", ErrUnavailable, err)
	}
	return nil
}

// pause makes every caller wait d before its next request.
func (c *Client) pause(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		cur := c.paused.Load()
		if cur >= until || c.paused.CompareAndSwap(cur, until) {
			return
		}
	}
}

// once makes one request. It returns Retry-After (if Seam sent one) with
// the error.
func (c *Client) once(ctx context.Context, path string, payload []byte, out any) (time.Duration, error) {
	if c.o.APIKey == "" {
		return 0, ErrNoAPIKey
	}
	if err := c.admit(ctx); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.o.APIKey)
	if c.o.WorkspaceID != "" {
		req.Header.Set("seam-workspace", c.o.WorkspaceID)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	c.duration.WithLabelValues(path).Observe(time.Since(start).Seconds())
	if err != nil {
		c.requests.WithLabelValues(path, "error").Inc()
		return 0, fmt.Errorf("%w: POST %s: %w", ErrUnavailable, path, err)
	}
	defer resp.Body.Close()
	c.requests.WithLabelValues(path, strconv.Itoa(resp.StatusCode)).Inc()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, fmt.Errorf("%w: POST %s: reading the answer: %w", ErrUnavailable, path, err)
	}
	if resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			// Seam did act (2xx); we just cannot read what it said.
			return 0, fmt.Errorf("%w: POST %s: undecodable success body (seam-request-id %s): %w",
				ErrUnavailable, path, resp.Header.Get("seam-request-id"), err)
		}
		return 0, nil
	}
	apiErr := &APIError{Status: resp.StatusCode, RequestID: resp.Header.Get("seam-request-id")}
	var env struct {
		Error struct {
			Type    string          `json:"type"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &env) == nil && env.Error.Type != "" {
		apiErr.Type, apiErr.Message, apiErr.Data = env.Error.Type, env.Error.Message, env.Error.Data
	} else {
		apiErr.Type, apiErr.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(raw[:min(len(raw), 200)]))
	}
	var wait time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		wait = min(time.Duration(s)*time.Second, 30*time.Second)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		// Every caller waits what Seam asked (or the retry base, with
		// jitter, if it did not say); the rate limiter then lets them
		// through one by one, not all in the same instant.
		d := wait
		if d <= 0 {
			d = c.o.RetryBase/2 + rand.N(c.o.RetryBase/2+1)
		}
		c.pause(d)
	}
	return wait, apiErr
}
