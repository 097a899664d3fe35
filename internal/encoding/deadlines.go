package encoding

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/streams"
)

// Timer kinds.
const (
	timerDeadline = "deadline"
	timerEnrich   = "enrich"
)

// timer is the body of a message in ENCODING_TIMERS. The record stays the
// truth: the deadline handler re-reads record.Deadline, so an extension only
// changes the record and delays the same message again.
type timer struct {
	EncodingID string    `json:"encoding_id"`
	Kind       string    `json:"kind"`
	Due        time.Time `json:"due"`
}

// schedule publishes a timer for an encoding; one per kind, deduplicated by
// the stream on <encoding_id>:<kind>.
func (s *Service) schedule(ctx context.Context, encID, kind string, due time.Time) error {
	subj, err := streams.TimerSubject(encID, kind)
	if err != nil {
		return err
	}
	body, err := json.Marshal(timer{EncodingID: encID, Kind: kind, Due: due.UTC()})
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: subj, Data: body, Header: nats.Header{
		jetstream.MsgIDHeader:          {encID + ":" + kind},
		jetstream.ExpectedStreamHeader: {streams.TimersStream},
	}}
	if _, err := s.o.Publisher.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("schedule %s for %s: %w", kind, encID, err)
	}
	return nil
}

// Deadline outcomes, label values of cardwire_worker_deadlines_total.
const (
	deadlineAlreadyFinal = "already_final"
	deadlineIssued       = "issued"
	deadlineFailed       = "failed"
	deadlineExtended     = "extended"
	deadlineExpired      = "expired"
	deadlineSeamError    = "seam_error"
)

// onDeadline handles a due deadline: if the encoding is still pending, ask
// Seam once about its action attempt and settle, extend, or expire it. It
// returns the delay after which to look again, or 0 when done.
func (s *Service) onDeadline(ctx context.Context, id string, delivered uint64) (time.Duration, error) {
	rec, _, err := s.store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	now := s.o.Now()
	if rec.Status.Terminal() {
		s.metrics.deadlines.WithLabelValues(deadlineAlreadyFinal).Inc()
		if rec.ResolvedBy == ResolvedByReconcile || rec.ResolvedBy == ResolvedByDeadline {
			// This timer settled it and may have failed to publish before it
			// was acked: publish again (dropped as a duplicate otherwise).
			return 0, s.republish(ctx, rec)
		}
		return 0, nil
	}
	if wait := rec.Deadline.Sub(now); wait > 0 {
		return wait, nil // extended meanwhile, or redelivered early
	}
	maxAt := rec.RequestedAt.Add(s.o.MaxAge)
	if s.o.Seam == nil {
		// Track-only: nobody can ask Seam; the deadline is the end.
		return 0, s.expire(ctx, id, "no webhook before the deadline and no Seam API key to ask")
	}

	attempt, err := s.askSeam(ctx, rec)
	if err != nil {
		s.metrics.deadlines.WithLabelValues(deadlineSeamError).Inc()
		if now.After(maxAt) {
			return 0, s.expire(ctx, id, "Seam could not be asked before the maximum age: "+err.Error())
		}
		s.log.Warn().Err(err).Str("encoding_id", id).Msg("reconcile: Seam unavailable; trying again")
		// Ask again soon (doubling from a quarter second, at most 30s).
		return min(250*time.Millisecond<<min(delivered, 7), 30*time.Second), nil
	}
	switch attempt.Status {
	case seam.AttemptSuccess:
		card, _ := attempt.Credential()
		s.metrics.deadlines.WithLabelValues(deadlineIssued).Inc()
		return 0, s.finish(ctx, id, "", func(r *Record) {
			r.Status, r.ResolvedBy, r.IssueKind = StatusIssued, ResolvedByReconcile, "issued"
			enrich(r, card)
		})
	case seam.AttemptError:
		e := RecordError{Type: "uncategorized_error", Message: "Seam reported the encode failed"}
		if attempt.Error != nil {
			e = RecordError{Type: attempt.Error.Type, Message: attempt.Error.Message}
		}
		s.metrics.deadlines.WithLabelValues(deadlineFailed).Inc()
		return 0, s.finish(ctx, id, "", func(r *Record) {
			r.Status, r.ResolvedBy, r.Error = StatusFailed, ResolvedByReconcile, &e
		})
	}
	// Still pending (a guest slow to put the card on the encoder): extend,
	// doubling the time waited so far, up to the maximum age.
	if !now.Before(maxAt) {
		return 0, s.expire(ctx, id, "still pending at Seam after the maximum age")
	}
	next := now.Add(max(s.o.ConfirmTimeout, now.Sub(rec.RequestedAt)))
	if next.After(maxAt) {
		next = maxAt
	}
	if _, _, err := s.store.Update(ctx, id, func(r Record) (Record, bool) {
		if r.Status.Terminal() {
			return r, false
		}
		r.Deadline = next.UTC()
		return r, true
	}); err != nil {
		return 0, err
	}
	s.metrics.deadlines.WithLabelValues(deadlineExtended).Inc()
	s.log.Info().Str("encoding_id", id).Time("deadline", next).Msg("encoding still pending at Seam; deadline extended")
	return next.Sub(now), nil
}

// askSeam reads what Seam knows: the action attempt, or, when the encode
// call never answered (no attempt id), whether the credential is issued.
func (s *Service) askSeam(ctx context.Context, rec Record) (seam.ActionAttempt, error) {
	if rec.ActionAttemptID != "" {
		return s.o.Seam.GetActionAttempt(ctx, rec.ActionAttemptID)
	}
	if rec.AcsCredentialID == "" {
		return seam.ActionAttempt{Status: seam.AttemptPending}, nil
	}
	cred, err := s.o.Seam.GetCredential(ctx, rec.AcsCredentialID)
	if err != nil {
		return seam.ActionAttempt{}, err
	}
	if cred.IsIssued && cred.IssuedAt != nil && !cred.IssuedAt.Before(rec.RequestedAt.Add(-s.o.SkewMargin)) {
		result, _ := json.Marshal(cred)
		return seam.ActionAttempt{Status: seam.AttemptSuccess, Result: result}, nil
	}
	return seam.ActionAttempt{Status: seam.AttemptPending}, nil
}

func (s *Service) expire(ctx context.Context, id, why string) error {
	s.metrics.deadlines.WithLabelValues(deadlineExpired).Inc()
	return s.finish(ctx, id, "", func(r *Record) {
		r.Status, r.ResolvedBy = StatusExpired, ResolvedByDeadline
		r.Error = &RecordError{Type: "expired", Message: why}
	})
}

// finish moves a pending encoding to a final state with set, publishes the
// outcome and records it. An encoding that is already final is left as it
// is (a webhook won the race): not an error.
func (s *Service) finish(ctx context.Context, id, eventID string, set func(*Record)) error {
	rec, changed, err := s.store.Update(ctx, id, func(r Record) (Record, bool) {
		if r.Status.Terminal() {
			return r, false
		}
		at := s.o.Now().UTC()
		r.ResolvedAt = &at
		set(&r)
		return r, true
	})
	if err != nil || !changed {
		return err
	}
	if err := publishOutcome(ctx, s.o.Publisher, rec); err != nil {
		return err
	}
	s.resolved(ctx, rec, eventID)
	return nil
}

// enrich copies the card number and issue time from a credential.
func enrich(r *Record, c seam.Credential) {
	if c.CardNumber != nil && *c.CardNumber != "" {
		r.CardNumber = *c.CardNumber
	}
	if c.IssuedAt != nil {
		at := c.IssuedAt.UTC()
		r.IssuedAt = &at
	}
}

// onEnrich retries fetching the card number of an issued encoding. It
// returns the delay before the next try, or 0 when done or given up.
func (s *Service) onEnrich(ctx context.Context, id string, delivered uint64) (time.Duration, error) {
	rec, _, err := s.store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if rec.Status != StatusIssued || rec.AcsCredentialID == "" || s.o.Seam == nil {
		return 0, nil
	}
	if rec.CardNumber != "" {
		// Stored by an earlier try whose publish may have failed.
		return 0, publishOutcomeID(ctx, s.o.Publisher, rec, rec.EncodingID+":issued:card")
	}
	cred, err := s.fetchCard(ctx, rec.AcsCredentialID)
	if err != nil {
		if s.o.Now().Sub(rec.RequestedAt) > s.o.MaxAge {
			s.log.Warn().Err(err).Str("encoding_id", id).Msg("card number not fetched; giving up")
			return 0, nil
		}
		return min(time.Second<<min(delivered, 6), time.Minute), nil
	}
	rec, changed, err := s.store.Update(ctx, id, func(r Record) (Record, bool) {
		if r.Status != StatusIssued || r.CardNumber != "" {
			return r, false
		}
		enrich(&r, cred)
		return r, true
	})
	if err != nil || !changed {
		return 0, err
	}
	// An update of the issued outcome, with its own message id.
	return 0, publishOutcomeID(ctx, s.o.Publisher, rec, rec.EncodingID+":issued:card")
}

// fetchCard reads a credential within EnrichTimeout and fails unless it
// has a card number.
func (s *Service) fetchCard(ctx context.Context, credentialID string) (seam.Credential, error) {
	fctx, cancel := context.WithTimeout(ctx, s.o.EnrichTimeout)
	defer cancel()
	cred, err := s.o.Seam.GetCredential(fctx, credentialID)
	if err != nil {
		return cred, err
	}
	if cred.CardNumber == nil || *cred.CardNumber == "" {
		return cred, errors.New("credential has no card number yet")
	}
	return cred, nil
}

// Timers consumes ENCODING_TIMERS: deadlines and enrichment retries. Like
// the processor, several workers share the durable consumer; a timer that
// is not due yet goes back with a delay (NakWithDelay), so nothing scans the
// bucket and nothing lives only in one process's memory.
type Timers struct {
	svc      *Service
	consumer jetstream.Consumer
	log      zerolog.Logger
	timeout  time.Duration
	cc       jetstream.ConsumeContext
	wg       sync.WaitGroup
}

// NewTimers returns a Timers over the encoding-timers consumer.
func NewTimers(svc *Service, consumer jetstream.Consumer, log zerolog.Logger, handleTimeout time.Duration) (*Timers, error) {
	if svc == nil || consumer == nil || handleTimeout <= 0 {
		return nil, errors.New("NewTimers needs a service, a consumer and a positive timeout")
	}
	return &Timers{svc: svc, consumer: consumer, log: log, timeout: handleTimeout}, nil
}

// Start begins consuming.
func (t *Timers) Start() error {
	cc, err := t.consumer.Consume(func(msg jetstream.Msg) {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.handle(msg)
		}()
	}, jetstream.PullMaxMessages(64), jetstream.PullHeartbeat(consumeHeartbeat), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		t.log.Warn().Err(err).Msg("consume timers")
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", streams.TimersConsumer, err)
	}
	t.cc = cc
	return nil
}

// Stop stops pulling and waits for timers in hand, or ctx.
func (t *Timers) Stop(ctx context.Context) error {
	if t.cc == nil {
		return nil
	}
	t.cc.Drain()
	done := make(chan struct{})
	go func() { <-t.cc.Closed(); t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("timers drain: %w", ctx.Err())
	}
}

func (t *Timers) handle(msg jetstream.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	defer cancel()
	var tm timer
	if err := json.Unmarshal(msg.Data(), &tm); err != nil || !streams.ValidToken(tm.EncodingID) {
		t.log.Error().Str("subject", msg.Subject()).Msg("undecodable timer; dropped")
		_ = msg.Term()
		return
	}
	delivered := uint64(1)
	if meta, err := msg.Metadata(); err == nil {
		delivered = meta.NumDelivered
	}
	// Not due yet (every timer is delivered at once when published): back
	// to the stream until it is, without touching the bucket.
	if wait := tm.Due.Sub(t.svc.o.Now()); wait > 0 {
		_ = msg.NakWithDelay(wait)
		return
	}
	var again time.Duration
	var err error
	switch tm.Kind {
	case timerDeadline:
		again, err = t.svc.onDeadline(ctx, tm.EncodingID, delivered)
	case timerEnrich:
		again, err = t.svc.onEnrich(ctx, tm.EncodingID, delivered)
	default:
		t.log.Error().Str("kind", tm.Kind).Msg("unknown timer kind; dropped")
		_ = msg.Term()
		return
	}
	if err != nil {
		again = min(time.Second<<min(delivered, 5), 30*time.Second)
		t.log.Warn().Err(err).Str("encoding_id", tm.EncodingID).Str("kind", tm.Kind).Dur("retry_in", again).Msg("timer failed")
	}
	if again > 0 {
		_ = msg.NakWithDelay(again)
		return
	}
	actx, acancel := context.WithTimeout(context.Background(), t.timeout)
	defer acancel()
	if err := msg.DoubleAck(actx); err != nil {
		t.log.Warn().Err(err).Str("encoding_id", tm.EncodingID).Msg("timer ack failed; it will come again and find the encoding final")
	}
}
