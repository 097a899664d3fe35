// Package seamsim is an in-memory stand-in for Seam Connect, for local runs
// and tests. It owns fake encoders, credentials, access methods and
// ENCODE_CREDENTIAL action attempts; it answers the Seam routes cardwire
// calls with Seam's request and response shapes (JSON POST bodies, the
// {"<key>": …, "ok": true} and {"error": {…}, "ok": false} envelopes, a
// seam-request-id header); and it delivers acs_credential.issued/reissued
// (or access_method.issued/reissued) webhooks signed with the svix library,
// redelivering with the same svix-id on failure as Svix does.
//
// It keeps every event it makes in the workspace's event log, served by
// /events/list, whatever became of its webhook. Webhooks are managed with
// /webhooks/create, list, get and delete; Options.WebhookURL is the first.
// Each event goes to every webhook that subscribes to its type, as its own
// message (its own svix-id) signed with that webhook's secret: with two
// webhooks to one URL, as during a secret rotation, the receiver gets the
// same body twice.
//
// Knobs make the next encode or request misbehave the way the real service
// can: a dropped, duplicated, delayed or early webhook, an attempt that never
// resolves, a failed encode (which, as in Seam, sends no webhook), an error
// answer or an outage. Time comes from real timers, so tests keep
// Options.EncodeDelay short and wait on webhooks or on the attempt's status.
//
// A Sim is one workspace behind its API key. A Multi is several, as one
// Seam account with a workspace per property: it routes each request by its
// credentials (a workspace's API key, or the personal access token with a
// seam-workspace header) to that workspace's Sim.
package seamsim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/cardwire/cardwire/internal/seam"
)

// DefaultEncodeDelay is how long an encode stays pending when
// Options.EncodeDelay is zero.
const DefaultEncodeDelay = time.Second

// DefaultRetryDelays returns the webhook redelivery delays used when
// Options.RetryDelays is nil: Svix's schedule, compressed for tests.
func DefaultRetryDelays() []time.Duration {
	return []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, time.Second, 5 * time.Second}
}

// Options configure a Sim.
type Options struct {
	// APIKey is required: every request needs "Authorization: Bearer
	// <APIKey>", else it gets a 401 error envelope (type "unauthorized").
	APIKey string
	// WorkspaceID is the workspace_id of everything the Sim creates and of
	// its webhooks; a random UUID when empty.
	WorkspaceID string
	// WebhookURL is the first webhook (for every event type): where signed
	// webhooks are POSTed; empty means none until /webhooks/create.
	WebhookURL string
	// WebhookSecret (whsec_…) signs the first webhook's messages; required
	// with WebhookURL.
	WebhookSecret string
	// EncodeDelay is the time from an encode call to its attempt resolving;
	// DefaultEncodeDelay when zero.
	EncodeDelay time.Duration
	// RetryDelays are the webhook redelivery delays after a non-2xx answer
	// or a network error, each counted from the previous failure; the
	// svix-id and body stay the same. DefaultRetryDelays when nil; an empty
	// non-nil slice means no redelivery.
	RetryDelays []time.Duration
	// Strict answers unknown encoder, credential and access-method ids with
	// Seam's 404 (acs_encoder_not_found, acs_credential_not_found,
	// access_method_not_found). When false, unknown ids are created on first
	// use, which suits a local run.
	Strict bool
	Log    zerolog.Logger
	// Now is the clock for timestamps (and svix-timestamp); time.Now when
	// nil. Delays always use real timers.
	Now func() time.Time
}

// Validate reports the first option that cannot work.
func (o Options) Validate() error {
	switch {
	case o.APIKey == "":
		return errors.New("Options.APIKey must be set")
	case o.WebhookURL != "" && o.WebhookSecret == "":
		return errors.New("Options.WebhookSecret must be set when Options.WebhookURL is")
	}
	if err := validateShared("Options", o.EncodeDelay, o.RetryDelays, o.WebhookURL); err != nil {
		return err
	}
	return validateSecret("Options.WebhookSecret", o.WebhookSecret)
}

// validateShared checks the options a Sim and a Multi have in common;
// prefix names the struct in the errors.
func validateShared(prefix string, encodeDelay time.Duration, retryDelays []time.Duration, webhookURL string) error {
	if encodeDelay < 0 {
		return fmt.Errorf("%s.EncodeDelay must not be negative", prefix)
	}
	for i, d := range retryDelays {
		if d < 0 {
			return fmt.Errorf("%s.RetryDelays[%d] must not be negative, got %s", prefix, i, d)
		}
	}
	if webhookURL != "" {
		if err := checkWebhookURL(webhookURL); err != nil {
			return fmt.Errorf("%s.WebhookURL %w", prefix, err)
		}
	}
	return nil
}

// checkWebhookURL refuses what cannot be POSTed to.
func checkWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("must be an absolute http(s) URL, got %q", raw)
	}
	return nil
}

// validateSecret checks a whsec_ secret (none is fine); name is the field.
func validateSecret(name, secret string) error {
	if secret == "" {
		return nil
	}
	if _, err := svix.NewWebhook(secret); err != nil {
		// The decode error names a byte offset, never the secret.
		return fmt.Errorf("%s must be whsec_ followed by base64: %w", name, err)
	}
	return nil
}

// Sim is a fake Seam workspace. Its methods are safe for concurrent use.
type Sim struct {
	o                  Options
	client             *http.Client
	transport          *http.Transport
	systemID           string // every encoder and credential is in one access system
	connectedAccountID string

	ctx       context.Context // cancelled by Close; aborts webhook POSTs
	cancel    context.CancelFunc
	wg        sync.WaitGroup // timer callbacks not yet finished
	delivered atomic.Int64

	mu       sync.Mutex
	closed   bool
	timers   map[*time.Timer]struct{}
	encoders map[string]*encoder
	encOrder []string
	creds    map[string]*credential
	methods  map[string]*accessMethod
	attempts map[string]*seam.ActionAttempt
	events   []loggedEvent // creation order
	hooks    []*hook       // creation order; Options.WebhookURL first
	calls    map[string]int
	authed   map[authCall]int // calls that reached the workspace, by credentials
	fail     map[string][]failure
	down     bool
	next     knobs
}

// knobs shape the next encode.
type knobs struct {
	drop, duplicate, early, hold bool
	delay                        time.Duration
}

type failure struct {
	status     int
	retryAfter time.Duration
}

type encoder struct {
	id        string
	createdAt time.Time
	failNext  string // error type of the next encode on it; "" = succeed
}

type credential struct {
	id         string
	createdAt  time.Time
	issued     bool
	issuedAt   *time.Time
	cardNumber *string
}

type accessMethod struct {
	id      string
	grantID string
	issued  bool
	cred    *credential // what an encode of it writes, and its result
}

// New validates o and returns a Sim with no encoders, credentials or
// access methods. Close it to stop its timers and deliveries.
func New(o Options) (*Sim, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return newSim(o), nil
}

// newSim fills in o's defaults; o is valid, except that a Multi's
// workspace may have no APIKey (it is reached with the personal access
// token only).
func newSim(o Options) *Sim {
	if o.WorkspaceID == "" {
		o.WorkspaceID = uuid.NewString()
	}
	if o.EncodeDelay == 0 {
		o.EncodeDelay = DefaultEncodeDelay
	}
	if o.RetryDelays == nil {
		o.RetryDelays = DefaultRetryDelays()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Sim{
		o:                  o,
		systemID:           uuid.NewString(),
		connectedAccountID: uuid.NewString(),
		timers:             map[*time.Timer]struct{}{},
		encoders:           map[string]*encoder{},
		creds:              map[string]*credential{},
		methods:            map[string]*accessMethod{},
		attempts:           map[string]*seam.ActionAttempt{},
		calls:              map[string]int{},
		authed:             map[authCall]int{},
		fail:               map[string][]failure{},
	}
	if o.WebhookURL != "" {
		h, _ := newHook(o.WebhookURL, nil, o.WebhookSecret) // checked by Validate
		s.hooks = append(s.hooks, h)
	}
	s.transport = http.DefaultTransport.(*http.Transport).Clone()
	// Svix gives a receiver 15s to answer.
	s.client = &http.Client{Transport: s.transport, Timeout: 15 * time.Second}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Close stops pending encodes and webhook deliveries, aborts POSTs in
// flight and waits for them to end. Requests answered after Close still
// work but schedule nothing. Close may be called more than once.
func (s *Sim) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.cancel()
		for t := range s.timers {
			if t.Stop() {
				s.wg.Done() // its callback will never run
			}
			delete(s.timers, t)
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.transport.CloseIdleConnections()
}

// after runs fn in its own goroutine after d, unless Close comes first. It
// reports whether fn was scheduled.
func (s *Sim) after(d time.Duration, fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		defer s.wg.Done()
		s.mu.Lock() // after holds mu until t is set and recorded
		delete(s.timers, t)
		closed := s.closed
		s.mu.Unlock()
		if !closed {
			fn()
		}
	})
	s.timers[t] = struct{}{}
	return true
}

func (s *Sim) now() time.Time { return s.o.Now().UTC().Truncate(time.Millisecond) }

// AddEncoder registers an encoder (a no-op if it exists).
func (s *Sim) AddEncoder(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addEncoderLocked(id)
}

// AddCredential registers a card acs_credential that is not issued yet (a
// no-op if it exists).
func (s *Sim) AddCredential(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addCredentialLocked(id)
}

// AddAccessMethod registers a card access method, with one access grant and
// the credential its encode will produce (a no-op if it exists).
func (s *Sim) AddAccessMethod(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addMethodLocked(id)
}

func (s *Sim) addEncoderLocked(id string) *encoder {
	if e, ok := s.encoders[id]; ok {
		return e
	}
	e := &encoder{id: id, createdAt: s.now()}
	s.encoders[id] = e
	s.encOrder = append(s.encOrder, id)
	return e
}

func (s *Sim) addCredentialLocked(id string) *credential {
	if c, ok := s.creds[id]; ok {
		return c
	}
	c := &credential{id: id, createdAt: s.now()}
	s.creds[id] = c
	return c
}

func (s *Sim) addMethodLocked(id string) *accessMethod {
	if m, ok := s.methods[id]; ok {
		return m
	}
	m := &accessMethod{id: id, grantID: uuid.NewString(), cred: s.addCredentialLocked(uuid.NewString())}
	s.methods[id] = m
	return m
}

// Calls is how many requests reached path (for example
// "/action_attempts/get"), failed ones included.
func (s *Sim) Calls(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

// Auth is the kind of credentials a request carried, named after Seam's
// security schemes.
type Auth string

const (
	// AuthAPIKey is "Authorization: Bearer <API key>"; any seam-workspace
	// header is ignored, since a key is scoped to its workspace.
	AuthAPIKey Auth = "api_key"
	// AuthPAT is "Authorization: Bearer <personal access token>" plus
	// "seam-workspace: <workspace_id>".
	AuthPAT Auth = "pat_with_workspace"
)

type authCall struct {
	path string
	auth Auth
}

// CallsWith is how many requests reached path in this workspace with
// credentials of kind auth, failed ones included; requests whose
// credentials were refused are not counted.
func (s *Sim) CallsWith(path string, auth Auth) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authed[authCall{path, auth}]
}

// WorkspaceID is the workspace the Sim stands for.
func (s *Sim) WorkspaceID() string { return s.o.WorkspaceID }

// Delivered is how many webhook POSTs were answered 2xx, to every
// webhook together.
func (s *Sim) Delivered() int { return int(s.delivered.Load()) }

// DropNextWebhook makes the next encode succeed without a webhook (to any
// of the webhooks); its event is still in the event log.
func (s *Sim) DropNextWebhook() { s.setKnob(func(k *knobs) { k.drop = true }) }

// DuplicateNextWebhook makes the next encode's webhook arrive twice: two
// messages with different svix-ids and the same event_id.
func (s *Sim) DuplicateNextWebhook() { s.setKnob(func(k *knobs) { k.duplicate = true }) }

// DelayNextWebhook sends the next encode's webhook d after its attempt
// succeeded.
func (s *Sim) DelayNextWebhook(d time.Duration) { s.setKnob(func(k *knobs) { k.delay = d }) }

// WebhookBeforeResponse makes the next encode succeed at once and deliver
// its webhook (first try) before the encode's HTTP answer is written. The
// answer still shows the attempt pending, as it was when accepted.
func (s *Sim) WebhookBeforeResponse() { s.setKnob(func(k *knobs) { k.early = true }) }

// HoldNextEncode keeps the next encode's attempt pending for ever.
func (s *Sim) HoldNextEncode() { s.setKnob(func(k *knobs) { k.hold = true }) }

func (s *Sim) setKnob(f func(*knobs)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.next)
}

// FailNext makes the next request to path answer status with an error
// envelope, and a Retry-After header (whole seconds, rounded up) when
// retryAfter > 0. Calls queue: two calls fail the next two requests.
func (s *Sim) FailNext(path string, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[path] = append(s.fail[path], failure{status, retryAfter})
}

// SetDown makes every API request answer 503 (type "service_unavailable")
// while down is true. Scheduled encodes and webhooks carry on.
func (s *Sim) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}
