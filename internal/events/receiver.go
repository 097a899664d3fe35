package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"

	"github.com/cardwire/cardwire/internal/httpapi"
	"github.com/cardwire/cardwire/internal/streams"
)

// publisher is the one method of jetstream.JetStream the receiver needs.
type publisher interface {
	PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Options configure a Receiver.
type Options struct {
	Verifier  *Verifier
	Publisher publisher
	Log       zerolog.Logger
	// Registerer receives the receiver's metrics.
	Registerer prometheus.Registerer
	// MaxBodyBytes is the largest body accepted; larger ones get 413.
	MaxBodyBytes int64
	// PublishTimeout bounds the wait for a PubAck; it must stay well inside
	// Svix's 15 s answer window.
	PublishTimeout time.Duration
	// MaxInFlight bounds requests being read, verified or published at
	// once; beyond it requests get 429.
	MaxInFlight int
	// RetryAfter is sent with 429 and 503.
	RetryAfter time.Duration
}

// DefaultOptions returns the documented defaults; Verifier, Publisher and
// Registerer must still be set.
func DefaultOptions() Options {
	return Options{
		MaxBodyBytes:   256 << 10,
		PublishTimeout: 5 * time.Second,
		MaxInFlight:    1024,
		RetryAfter:     5 * time.Second,
		Log:            zerolog.Nop(),
	}
}

// Validate reports the first option that cannot work.
func (o Options) Validate() error {
	switch {
	case o.Verifier == nil:
		return errors.New("Options.Verifier must be set")
	case o.Publisher == nil:
		return errors.New("Options.Publisher must be set")
	case o.Registerer == nil:
		return errors.New("Options.Registerer must be set")
	case o.MaxBodyBytes <= 0:
		return errors.New("Options.MaxBodyBytes must be positive")
	case o.PublishTimeout <= 0 || o.PublishTimeout >= 15*time.Second:
		return fmt.Errorf("Options.PublishTimeout must be between 0 and Svix's 15s answer window, got %s", o.PublishTimeout)
	case o.MaxInFlight <= 0:
		return errors.New("Options.MaxInFlight must be positive")
	case o.RetryAfter <= 0:
		return errors.New("Options.RetryAfter must be positive")
	}
	return nil
}

// Receiver is the http.Handler for POST /webhooks/seam.
type Receiver struct {
	o       Options
	slots   chan struct{}
	metrics *metrics
}

// NewReceiver validates o and registers the receiver's metrics.
func NewReceiver(o Options) (*Receiver, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &Receiver{
		o:       o,
		slots:   make(chan struct{}, o.MaxInFlight),
		metrics: newMetrics(o.Registerer),
	}, nil
}

// Path is where Seam posts webhooks.
const Path = "/webhooks/seam"

// Routes returns the public port's handler. Middleware, outermost first:
// recover (a panic answers 500, never kills the process) → request logger in
// the context → the route. Only the exact path /webhooks/seam is served; any
// other path is a JSON 404 (no redirects for unclean paths) and any other
// method a JSON 405, both counted.
func (rc *Receiver) Routes() http.Handler {
	notAllowed := httpapi.MethodNotAllowed(http.MethodPost)
	route := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path != Path:
			rc.metrics.requests.WithLabelValues(OutcomeNotFound, "").Inc()
			httpapi.NotFound(w, r)
		case r.Method != http.MethodPost:
			rc.metrics.requests.WithLabelValues(OutcomeMethodNotAllowed, "").Inc()
			notAllowed(w, r)
		default:
			rc.ServeHTTP(w, r)
		}
	})
	return httpapi.Recoverer(rc.o.Log, hlog.NewHandler(rc.o.Log)(route))
}

// ServeHTTP handles one webhook delivery: limit → read → verify → parse →
// publish → answer. It answers 2xx only once JetStream has the message.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rc.metrics.requestsActive.Inc()
	defer rc.metrics.requestsActive.Dec()
	outcome, reason := rc.serve(w, r)
	rc.metrics.requests.WithLabelValues(outcome, reason).Inc()
	rc.metrics.requestDuration.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) (outcome, reason string) {
	log := hlog.FromRequest(r)
	if r.ContentLength > rc.o.MaxBodyBytes {
		rc.tooLarge(w, log, r.ContentLength)
		return OutcomeTooLarge, ""
	}
	// The slot covers reading and verifying too, so memory held by bodies is
	// bounded by MaxInFlight × MaxBodyBytes, whatever the burst.
	select {
	case rc.slots <- struct{}{}:
		defer func() { <-rc.slots }()
	default:
		log.Warn().Str("outcome", OutcomeOverloaded).Str("webhook_id", unverifiedID(r.Header)).
			Int("max_in_flight", rc.o.MaxInFlight).Msg("webhook refused: too many requests in flight")
		httpapi.WriteRetryError(w, &httpapi.Error{Status: http.StatusTooManyRequests, Type: "overloaded",
			Message: "too many webhooks in flight; retry later"}, rc.o.RetryAfter)
		return OutcomeOverloaded, ""
	}
	body, err := readBody(w, r, rc.o.MaxBodyBytes)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			rc.tooLarge(w, log, -1)
			return OutcomeTooLarge, ""
		}
		log.Warn().Err(err).Str("outcome", OutcomeBadRequest).Msg("webhook body not read")
		httpapi.WriteError(w, &httpapi.Error{Status: http.StatusBadRequest, Type: "invalid_body", Message: "the request body could not be read"})
		return OutcomeBadRequest, ""
	}

	// Parsed before it is verified only to pick the secrets of the
	// workspace it names; nothing of it is used unless the signature holds.
	env, err := ParseEnvelope(body)
	delivery, verr := rc.o.Verifier.Verify(body, r.Header, env.WorkspaceID)
	if verr != nil {
		var sigErr *SignatureError
		reason := ReasonNoMatchingSecret
		if errors.As(verr, &sigErr) {
			reason = sigErr.Reason
		}
		// The signature itself is never logged; the ids only help when
		// Svix's dashboard shows the same delivery, or a workspace is
		// missing from WORKSPACES_FILE.
		log.Warn().Str("outcome", OutcomeInvalidSignature).Str("reason", reason).
			Str("webhook_id", unverifiedID(r.Header)).Str("claimed_workspace_id", unverifiedWorkspace(env.WorkspaceID)).
			Msg("webhook rejected")
		httpapi.WriteError(w, &httpapi.Error{Status: http.StatusUnauthorized, Type: "invalid_signature",
			Message: "webhook signature verification failed: " + reason})
		return OutcomeInvalidSignature, reason
	}

	var msg *nats.Msg
	if err == nil {
		msg, err = streams.EventMsg(body, streams.Event{EventID: env.EventID, EventType: env.EventType, WorkspaceID: env.WorkspaceID,
			WebhookID: delivery.ID, WebhookTimestamp: delivery.Timestamp, Traceparent: r.Header.Get("Traceparent")})
		if err != nil {
			// A workspace id or event type that cannot be a subject token.
			err = &EnvelopeError{Reason: QuarantineInvalidSubject, Detail: err.Error()}
		}
	}
	var envErr *EnvelopeError
	quarantined := errors.As(err, &envErr)
	if quarantined {
		msg = streams.QuarantineMsg(body, delivery.ID, delivery.Timestamp, envErr.Reason, r.Header.Get("Traceparent"))
	}
	// Fields are added per log event rather than with log.With, which would
	// copy the logger on every request even when nothing is logged.
	fields := func(e *zerolog.Event) *zerolog.Event {
		return e.Str("webhook_id", delivery.ID).Str("event_id", env.EventID).Str("event_type", env.EventType)
	}

	if outcome, reason := rc.publish(w, r.Context(), fields, msg); outcome != OutcomeAccepted {
		if outcome == OutcomeDuplicate {
			fields(log.Debug()).Str("outcome", outcome).Msg("webhook already stored")
			w.WriteHeader(http.StatusNoContent)
		}
		return outcome, reason
	}

	w.WriteHeader(http.StatusNoContent)
	if quarantined {
		// Verified, so Seam sent it: keep it for inspection, stop the retries.
		fields(log.Warn()).Str("outcome", OutcomeQuarantined).Str("reason", envErr.Reason).Str("detail", envErr.Detail).Msg("webhook quarantined")
		return OutcomeQuarantined, envErr.Reason
	}
	rc.metrics.events.WithLabelValues(eventTypeLabel(env.EventType)).Inc()
	rc.metrics.workspaceEvents.WithLabelValues(delivery.Workspace).Inc()
	fields(log.Debug()).Str("outcome", OutcomeAccepted).Str("subject", msg.Subject).Msg("webhook stored")
	return OutcomeAccepted, ""
}

// Reasons for OutcomeUnavailable.
const (
	unavailableNATS    = "nats"
	unavailableTimeout = "timeout"
	unavailableStream  = "stream"
)

// publish stores msg. It returns OutcomeAccepted or OutcomeDuplicate when
// JetStream has the message; otherwise it has answered 503 itself.
func (rc *Receiver) publish(w http.ResponseWriter, ctx context.Context, fields func(*zerolog.Event) *zerolog.Event, msg *nats.Msg) (outcome, reason string) {
	log := zerolog.Ctx(ctx)
	rc.metrics.inFlight.Inc()
	defer rc.metrics.inFlight.Dec()

	ctx, cancel := context.WithTimeout(ctx, rc.o.PublishTimeout)
	defer cancel()
	start := time.Now()
	ack, err := rc.o.Publisher.PublishMsg(ctx, msg)
	rc.metrics.publishDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		reason := unavailableReason(err)
		fields(log.Warn()).Err(err).Str("outcome", OutcomeUnavailable).Str("reason", reason).Msg("webhook not stored")
		httpapi.WriteRetryError(w, &httpapi.Error{Status: http.StatusServiceUnavailable, Type: "unavailable",
			Message: "the event could not be stored; retry later"}, rc.o.RetryAfter)
		return OutcomeUnavailable, reason
	}
	if ack.Duplicate {
		return OutcomeDuplicate, ""
	}
	return OutcomeAccepted, ""
}

func unavailableReason(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return unavailableTimeout
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return unavailableStream
	default:
		if _, ok := errors.AsType[jetstream.JetStreamError](err); ok {
			return unavailableStream
		}
		return unavailableNATS
	}
}

func (rc *Receiver) tooLarge(w http.ResponseWriter, log *zerolog.Logger, size int64) {
	log.Warn().Str("outcome", OutcomeTooLarge).Int64("content_length", size).Int64("limit", rc.o.MaxBodyBytes).Msg("webhook rejected")
	httpapi.WriteError(w, &httpapi.Error{Status: http.StatusRequestEntityTooLarge, Type: "body_too_large",
		Message: fmt.Sprintf("the body is larger than %d bytes", rc.o.MaxBodyBytes)})
}

// readBody reads at most limit bytes. With a Content-Length (already checked
// against limit) it reads into one exact-size buffer.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	rd := http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength >= 0 {
		buf := make([]byte, r.ContentLength)
		_, err := io.ReadFull(rd, buf)
		return buf, err
	}
	return io.ReadAll(rd)
}

// unverifiedWorkspace returns the workspace id a body claims, if it is a
// plain id of sane length: it is not verified.
func unverifiedWorkspace(id string) string {
	if len(id) > 64 || !streams.ValidToken(id) {
		return ""
	}
	return id
}

// unverifiedID returns the claimed webhook id, cut short: it is not
// verified, so it must not flood a log line.
func unverifiedID(h http.Header) string {
	id := h.Get("svix-id")
	if id == "" {
		id = h.Get("webhook-id")
	}
	if len(id) > 64 {
		id = id[:64]
	}
	return id
}
