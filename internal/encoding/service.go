package encoding

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/streams"
)

// ServiceOptions configure a Service.
type ServiceOptions struct {
	// Bucket is the ENCODINGS KV bucket.
	Bucket kv
	// Publisher publishes outcomes to ENCODING_EVENTS.
	Publisher  publisher
	Registerer prometheus.Registerer
	Log        zerolog.Logger
	// SkewMargin is how much earlier than requested_at a success event may
	// have occurred and still confirm the encoding (clock skew).
	SkewMargin time.Duration
	// EarlyTTL is how long an event that came before its encoding is kept.
	EarlyTTL time.Duration
	// ConfirmTimeout sets each new encoding's deadline.
	ConfirmTimeout time.Duration
	// DefaultWorkspaceID is used when a request names no workspace.
	DefaultWorkspaceID string
	// Seam, when set, starts encodings, answers at deadlines and supplies
	// card numbers. Without it the worker is track-only.
	Seam seamAPI
	// MaxAge is how long a pending encoding may be extended at its deadline
	// before it expires.
	MaxAge time.Duration
	// EnrichTimeout bounds the card-number fetch before an issued outcome.
	EnrichTimeout time.Duration
	// OutcomeWindow is ENCODING_EVENTS' duplicate window. A redelivered
	// event republishes its outcome (repairing a publish lost in a crash)
	// only inside it, where the stream drops the copy.
	OutcomeWindow time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// DefaultServiceOptions returns the documented defaults.
func DefaultServiceOptions() ServiceOptions {
	return ServiceOptions{SkewMargin: 30 * time.Second, EarlyTTL: 10 * time.Minute, ConfirmTimeout: time.Minute,
		MaxAge: 15 * time.Minute, EnrichTimeout: 2 * time.Second, OutcomeWindow: 30 * time.Minute, Log: zerolog.Nop()}
}

// Validate reports the first option that cannot work.
func (o ServiceOptions) Validate() error {
	switch {
	case o.Bucket == nil:
		return errors.New("ServiceOptions.Bucket must be set")
	case o.Publisher == nil:
		return errors.New("ServiceOptions.Publisher must be set")
	case o.Registerer == nil:
		return errors.New("ServiceOptions.Registerer must be set")
	case o.SkewMargin < 0:
		return errors.New("ServiceOptions.SkewMargin must not be negative")
	case o.EarlyTTL < time.Second:
		return errors.New("ServiceOptions.EarlyTTL must be at least 1s")
	case o.ConfirmTimeout <= 0:
		return errors.New("ServiceOptions.ConfirmTimeout must be positive")
	case o.OutcomeWindow <= 0:
		return errors.New("ServiceOptions.OutcomeWindow must be positive")
	case o.MaxAge < o.ConfirmTimeout:
		return errors.New("ServiceOptions.MaxAge must not be shorter than ConfirmTimeout")
	case o.EnrichTimeout <= 0:
		return errors.New("ServiceOptions.EnrichTimeout must be positive")
	case o.DefaultWorkspaceID != "" && !streams.ValidToken(o.DefaultWorkspaceID):
		return errors.New("ServiceOptions.DefaultWorkspaceID is not a valid id")
	}
	return nil
}

// Service is the encode-request lifecycle: registration, settling by events,
// cancellation, reads and watches. The processor and the API both use it.
type Service struct {
	o       ServiceOptions
	store   *Store
	metrics *metrics
	log     zerolog.Logger
}

// NewService validates o and registers the worker's metrics.
func NewService(o ServiceOptions) (*Service, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{o: o, store: NewStore(o.Bucket, o.EarlyTTL), metrics: newMetrics(o.Registerer), log: o.Log}, nil
}

// seamAPI is the part of the Seam client the service uses.
type seamAPI interface {
	EncodeCredential(ctx context.Context, req seam.EncodeRequest) (seam.ActionAttempt, error)
	EncodeAccessMethod(ctx context.Context, acsEncoderID, accessMethodID string) (seam.ActionAttempt, error)
	GetActionAttempt(ctx context.Context, id string) (seam.ActionAttempt, error)
	GetCredential(ctx context.Context, id string) (seam.Credential, error)
}

// ValidationError reports a request field that is missing or malformed.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// TerminalError reports an operation on an encoding that is already final.
type TerminalError struct {
	EncodingID string
	Status     Status
}

func (e *TerminalError) Error() string {
	return fmt.Sprintf("encoding %s is already %s", e.EncodingID, e.Status)
}

// ErrInProgress reports a repeated Idempotency-Key whose first request has
// not finished registering yet.
var ErrInProgress = errors.New("a request with this Idempotency-Key is still in progress")

// RegisterRequest registers an encoding the caller started with Seam.
type RegisterRequest struct {
	WorkspaceID     string `json:"workspace_id"`
	AcsEncoderID    string `json:"acs_encoder_id"`
	AcsCredentialID string `json:"acs_credential_id"`
	AccessMethodID  string `json:"access_method_id"`
	ActionAttemptID string `json:"action_attempt_id"`
	// RequestedAt is when the caller started the encode with Seam; it
	// defaults to now. Events that occurred before it (less the skew margin)
	// do not confirm the encoding, so a caller that registers after starting
	// should pass it.
	RequestedAt *time.Time `json:"requested_at,omitempty"`
	// ConfirmTimeout overrides the first deadline (a Go duration, 5s up to
	// the maximum age).
	ConfirmTimeout string `json:"confirm_timeout,omitempty"`
}

// ErrTrackOnly reports a request to start an encoding (no
// action_attempt_id) on a worker without a Seam API key.
var ErrTrackOnly = errors.New("starting encodings needs SEAM_API_KEY (or SEAM_API_KEY_FILE); without it, start the encode with Seam yourself and pass action_attempt_id")

// minConfirmTimeout bounds a per-request confirm_timeout from below.
const minConfirmTimeout = 5 * time.Second

func (s *Service) validate(req *RegisterRequest) error {
	if req.WorkspaceID == "" {
		req.WorkspaceID = s.o.DefaultWorkspaceID
	}
	if req.ActionAttemptID != "" && !streams.ValidToken(req.ActionAttemptID) {
		return &ValidationError{Field: "action_attempt_id", Message: "must be a Seam id (letters, digits, '-' or '_')"}
	}
	if req.ConfirmTimeout != "" {
		d, err := time.ParseDuration(req.ConfirmTimeout)
		if err != nil || d < minConfirmTimeout || d > s.o.MaxAge {
			return &ValidationError{Field: "confirm_timeout", Message: fmt.Sprintf("must be a duration from %s to %s", minConfirmTimeout, s.o.MaxAge)}
		}
	}
	for _, f := range []struct{ name, value string }{
		{"workspace_id", req.WorkspaceID}, {"acs_encoder_id", req.AcsEncoderID},
	} {
		if f.value == "" {
			return &ValidationError{Field: f.name, Message: "is required"}
		}
		if !streams.ValidToken(f.value) {
			return &ValidationError{Field: f.name, Message: "must be a Seam id (letters, digits, '-' or '_')"}
		}
	}
	if req.RequestedAt != nil {
		now := s.o.Now()
		switch {
		case req.RequestedAt.After(now.Add(s.o.SkewMargin)):
			return &ValidationError{Field: "requested_at", Message: "is in the future"}
		case req.RequestedAt.Before(now.Add(-s.o.EarlyTTL)):
			return &ValidationError{Field: "requested_at", Message: fmt.Sprintf("is more than %s ago", s.o.EarlyTTL)}
		}
	}
	switch {
	case req.AcsCredentialID == "" && req.AccessMethodID == "":
		return &ValidationError{Field: "acs_credential_id", Message: "one of acs_credential_id or access_method_id is required"}
	case req.AcsCredentialID != "" && req.AccessMethodID != "":
		return &ValidationError{Field: "access_method_id", Message: "give acs_credential_id or access_method_id, not both"}
	case req.AcsCredentialID != "" && !streams.ValidToken(req.AcsCredentialID):
		return &ValidationError{Field: "acs_credential_id", Message: "must be a Seam id"}
	case req.AccessMethodID != "" && !streams.ValidToken(req.AccessMethodID):
		return &ValidationError{Field: "access_method_id", Message: "must be a Seam id"}
	}
	return nil
}

// Register stores a pending encoding, publishes it, and applies any events
// that arrived before it. With an idempotency key, a repeat returns the first
// request's record (replayed=true). It fails with *ValidationError,
// *OpenEncodingError, ErrInProgress, or a storage error.
func (s *Service) Register(ctx context.Context, req RegisterRequest, idempotencyKey string) (rec Record, replayed bool, err error) {
	if err := s.validate(&req); err != nil {
		return Record{}, false, err
	}
	starting := req.ActionAttemptID == ""
	if starting && s.o.Seam == nil {
		return Record{}, false, ErrTrackOnly
	}
	confirm := s.o.ConfirmTimeout
	if req.ConfirmTimeout != "" {
		confirm, _ = time.ParseDuration(req.ConfirmTimeout)
	}
	now := s.o.Now().UTC()
	requested := now
	if req.RequestedAt != nil {
		requested = req.RequestedAt.UTC()
	}
	rec = Record{
		EncodingID:      uuid.NewString(),
		WorkspaceID:     req.WorkspaceID,
		AcsEncoderID:    req.AcsEncoderID,
		AcsCredentialID: req.AcsCredentialID,
		AccessMethodID:  req.AccessMethodID,
		ActionAttemptID: req.ActionAttemptID,
		Status:          StatusPending,
		RequestedAt:     requested,
		Deadline:        requested.Add(confirm),
	}
	if idempotencyKey != "" {
		first, err := s.store.RememberIdempotent(ctx, rec.WorkspaceID, idempotencyKey, rec.EncodingID)
		if err != nil {
			return Record{}, false, err
		}
		if first != rec.EncodingID {
			prev, _, err := s.store.Get(ctx, first)
			if errors.Is(err, ErrNotFound) {
				return Record{}, false, ErrInProgress
			}
			if err != nil {
				return Record{}, false, err
			}
			// Finish what the first request may not have: its outcome (a
			// no-op inside the window) and, while pending, the early area.
			prev, err = s.afterRegister(ctx, prev)
			return prev, true, err
		}
	}
	// The deadline timer goes first: once the record exists, a lost webhook
	// can never leave it pending for ever. A timer whose record was never
	// written finds nothing at its deadline and is dropped.
	if err := s.schedule(ctx, rec.EncodingID, timerDeadline, rec.Deadline); err != nil {
		if idempotencyKey != "" {
			_ = s.o.Bucket.Delete(context.WithoutCancel(ctx), idemKey(rec.WorkspaceID, idempotencyKey))
		}
		return Record{}, false, err
	}
	if err := s.store.Register(ctx, rec); err != nil {
		if idempotencyKey != "" {
			_ = s.o.Bucket.Delete(context.WithoutCancel(ctx), idemKey(rec.WorkspaceID, idempotencyKey))
		}
		return Record{}, false, err
	}
	kind, id := rec.target()
	s.log.Info().Str("encoding_id", rec.EncodingID).Str("target", kind+":"+id).Str("action_attempt_id", rec.ActionAttemptID).
		Str("to", string(StatusPending)).Msg("encoding registered")
	s.metrics.transitions.WithLabelValues(string(StatusPending)).Inc()
	rec, err = s.afterRegister(ctx, rec)
	if !starting || rec.Status.Terminal() {
		return rec, false, err
	}
	if err != nil {
		// The record and its deadline exist; a missing pending outcome or
		// early-area scan is no reason not to encode (and a retry would not
		// encode: it would replay this record).
		s.log.Warn().Err(err).Str("encoding_id", rec.EncodingID).Msg("registration partly failed; starting the encode anyway")
	}
	rec, err = s.start(ctx, rec)
	return rec, false, err
}

// afterRegister publishes the pending outcome and applies the events that
// came first (order does not matter). Both run even if one fails, so a
// failed publish never strands an early event; a retry with the same
// Idempotency-Key runs them again.
func (s *Service) afterRegister(ctx context.Context, rec Record) (Record, error) {
	var errs []error
	if !rec.Status.Terminal() {
		// Again on a replay (a no-op inside the timer stream's window), in
		// case the first request stopped before its timer was stored.
		if err := s.schedule(ctx, rec.EncodingID, timerDeadline, rec.Deadline); err != nil {
			errs = append(errs, err)
		}
		if err := publishOutcome(ctx, s.o.Publisher, rec); err != nil {
			errs = append(errs, err)
		}
		kind, id := rec.target()
		early, err := s.store.Early(ctx, rec.WorkspaceID, kind, id)
		errs = append(errs, err)
		for _, ev := range early {
			// Counted once already, as "early", when it was consumed.
			if _, err := s.settle(ctx, rec.EncodingID, ev); err != nil {
				errs = append(errs, err)
				continue
			}
			_ = s.store.ForgetEarly(ctx, ev, kind, id)
		}
		if len(early) > 0 {
			if latest, _, err := s.store.Get(ctx, rec.EncodingID); err == nil {
				rec = latest
			}
		}
	} else if err := s.republish(ctx, rec); err != nil {
		errs = append(errs, err)
	}
	return rec, errors.Join(errs...)
}

// Apply acts on one Seam event and reports what it did. An error means the
// event should be retried.
func (s *Service) Apply(ctx context.Context, ev Event) (Result, error) {
	if _, ok := effectOf(ev.EventType); !ok {
		return ResultIgnored, nil
	}
	kind, id := ev.target()
	if kind == kindEncoder {
		ids, err := s.store.PendingOnEncoder(ctx, ev.WorkspaceID, id)
		if err != nil {
			return "", err
		}
		result := ResultUnmatched
		for _, encID := range ids {
			res, err := s.settle(ctx, encID, ev)
			if err != nil {
				return "", err
			}
			if res == ResultMatched || result == ResultUnmatched {
				result = res
			}
		}
		return result, nil
	}
	encID, err := s.store.Lookup(ctx, ev.WorkspaceID, kind, id)
	if errors.Is(err, ErrNotFound) {
		if err := s.store.KeepEarly(ctx, ev, kind, id); err != nil {
			return "", err
		}
		// A registration may have claimed the index between the lookup and
		// the keep, after looking at the early area: look again, so that
		// one of the two always sees the other.
		encID, err = s.store.Lookup(ctx, ev.WorkspaceID, kind, id)
		if errors.Is(err, ErrNotFound) {
			return ResultEarly, nil
		}
		if err == nil {
			defer func() { _ = s.store.ForgetEarly(context.WithoutCancel(ctx), ev, kind, id) }()
		}
	}
	if err != nil {
		return "", err
	}
	res, err := s.settle(ctx, encID, ev)
	if err != nil || res != ResultConflict {
		return res, err
	}
	// The latest encoding is final and this event is not its own: it may be
	// for the next encoding of this credential (a re-encode), about to be
	// registered. Keep it, and look again as above.
	if err := s.store.KeepEarly(ctx, ev, kind, id); err != nil {
		return "", err
	}
	next, err := s.store.Lookup(ctx, ev.WorkspaceID, kind, id)
	if err != nil || next == encID {
		return res, err
	}
	defer func() { _ = s.store.ForgetEarly(context.WithoutCancel(ctx), ev, kind, id) }()
	return s.settle(ctx, next, ev)
}

// settle applies ev to one encoding with a compare-and-set, then publishes
// the outcome. A redelivered event finds its own event_id on the record
// (duplicate) and publishes again, which is a no-op unless the first
// publish was lost.
func (s *Service) settle(ctx context.Context, encID string, ev Event) (Result, error) {
	card, cardErr := s.cardFor(ctx, encID, ev)
	var res Result
	rec, _, err := s.store.Update(ctx, encID, func(r Record) (Record, bool) {
		next, r2, ch := apply(r, ev, s.o.SkewMargin, s.o.Now())
		res = r2
		if ch && card != nil {
			enrich(&next, *card)
		}
		return next, ch
	})
	if errors.Is(err, ErrNotFound) {
		return ResultUnmatched, nil
	}
	if err != nil {
		return "", err
	}
	switch res {
	case ResultDuplicate:
		if err := s.republish(ctx, rec); err != nil {
			return "", err
		}
	case ResultMatched:
		if cardErr != nil && rec.Status == StatusIssued {
			// Seam slow or down: the outcome goes out now, the card number
			// follows as an update.
			s.log.Info().Err(cardErr).Str("encoding_id", rec.EncodingID).Msg("card number not available yet; publishing without it")
			if err := s.schedule(ctx, rec.EncodingID, timerEnrich, s.o.Now()); err != nil {
				s.log.Warn().Err(err).Str("encoding_id", rec.EncodingID).Msg("card-number retry not scheduled")
			}
		}
		if err := publishOutcome(ctx, s.o.Publisher, rec); err != nil {
			return "", err
		}
		s.resolved(ctx, rec, ev.EventID)
		s.metrics.eventLag.Observe(s.o.Now().Sub(ev.OccurredAt).Seconds())
	case ResultConflict:
		s.log.Warn().Str("encoding_id", rec.EncodingID).Str("event_id", ev.EventID).Str("event_type", ev.EventType).
			Str("status", string(rec.Status)).Msg("event for an encoding that is already final; state unchanged")
	case ResultStale:
		s.log.Info().Str("encoding_id", rec.EncodingID).Str("event_id", ev.EventID).Time("occurred_at", ev.OccurredAt).
			Time("requested_at", rec.RequestedAt).Msg("event older than the encoding request; ignored")
	}
	return res, nil
}

// cardFor fetches the card number an issued event will add to a pending
// credential encoding, before the state change, so that the first final
// record already has it. It returns (nil, nil) when there is nothing to
// fetch, and an error only when a fetch was needed and failed (bounded by
// EnrichTimeout: the outcome is never held up longer).
func (s *Service) cardFor(ctx context.Context, encID string, ev Event) (*seam.Credential, error) {
	if s.o.Seam == nil {
		return nil, nil
	}
	if eff, ok := effectOf(ev.EventType); !ok || eff.status != StatusIssued {
		return nil, nil
	}
	rec, _, err := s.store.Get(ctx, encID)
	if err != nil || rec.AcsCredentialID == "" || rec.CardNumber != "" {
		return nil, nil
	}
	if _, res, _ := apply(rec, ev, s.o.SkewMargin, s.o.Now()); res != ResultMatched {
		return nil, nil
	}
	cred, err := s.fetchCard(ctx, rec.AcsCredentialID)
	if err != nil {
		return nil, err
	}
	return &cred, nil
}

// republish publishes rec's outcome again if it settled inside the outcome
// stream's duplicate window, where a copy is dropped: it repairs a publish
// lost between the KV update and a crash, and never duplicates an outcome.
func (s *Service) republish(ctx context.Context, rec Record) error {
	// Half the window leaves room for clocks that differ between workers.
	if rec.ResolvedAt == nil || s.o.Now().Sub(*rec.ResolvedAt) > s.o.OutcomeWindow/2 {
		return nil
	}
	return publishOutcome(ctx, s.o.Publisher, rec)
}

// resolved records a final status: metrics, the log line, index cleanup.
func (s *Service) resolved(ctx context.Context, rec Record, eventID string) {
	s.metrics.transitions.WithLabelValues(string(rec.Status)).Inc()
	s.metrics.resolved.WithLabelValues(string(rec.Status), rec.ResolvedBy).Inc()
	s.metrics.resolveDuration.Observe(s.o.Now().Sub(rec.RequestedAt).Seconds())
	ev := s.log.Info()
	if rec.Error != nil {
		ev = ev.Str("error_type", rec.Error.Type)
	}
	kind, id := rec.target()
	ev.Str("encoding_id", rec.EncodingID).Str("target", kind+":"+id).Str("event_id", eventID).
		Str("from", string(StatusPending)).Str("to", string(rec.Status)).Str("resolved_by", rec.ResolvedBy).Msg("encoding settled")
	if err := s.store.Resolved(ctx, rec); err != nil {
		s.log.Warn().Err(err).Str("encoding_id", rec.EncodingID).Msg("encoder index not removed")
	}
}

// Cancel settles a pending encoding as canceled. It fails with
// *TerminalError if it is already final, or ErrNotFound.
func (s *Service) Cancel(ctx context.Context, id string) (Record, error) {
	if !streams.ValidToken(id) {
		return Record{}, ErrNotFound
	}
	var terminal Status
	rec, changed, err := s.store.Update(ctx, id, func(r Record) (Record, bool) {
		if r.Status.Terminal() {
			terminal = r.Status
			return r, false
		}
		at := s.o.Now().UTC()
		r.Status, r.ResolvedBy, r.ResolvedAt = StatusCanceled, ResolvedByCancel, &at
		return r, true
	})
	if err != nil {
		return Record{}, err
	}
	if !changed {
		// A cancel whose outcome publish failed is repaired by the retry.
		if rec.ResolvedBy == ResolvedByCancel {
			if err := s.republish(ctx, rec); err != nil {
				return rec, err
			}
		}
		return rec, &TerminalError{EncodingID: id, Status: terminal}
	}
	if err := publishOutcome(ctx, s.o.Publisher, rec); err != nil {
		return rec, err
	}
	s.resolved(ctx, rec, "")
	return rec, nil
}

// Get returns one record, or ErrNotFound.
func (s *Service) Get(ctx context.Context, id string) (Record, error) {
	if !streams.ValidToken(id) {
		return Record{}, ErrNotFound
	}
	rec, _, err := s.store.Get(ctx, id)
	return rec, err
}

// Watch sends the record now and on every change until it is final or ctx
// ends, then closes the channel. It is a KV watch: nothing re-reads in a
// loop.
func (s *Service) Watch(ctx context.Context, id string) (<-chan Record, error) {
	if !streams.ValidToken(id) {
		return nil, ErrNotFound
	}
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	w, err := s.o.Bucket.Watch(ctx, recordKey(id))
	if err != nil {
		return nil, fmt.Errorf("watch encoding %s: %w", id, err)
	}
	out := make(chan Record, 1)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil || e.Operation() != jetstream.KeyValuePut {
					continue // nil marks the end of the initial values
				}
				var rec Record
				if json.Unmarshal(e.Value(), &rec) != nil {
					continue
				}
				select {
				case out <- rec:
				case <-ctx.Done():
					return
				}
				if rec.Status.Terminal() {
					return
				}
			}
		}
	}()
	return out, nil
}
