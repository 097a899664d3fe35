package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/store"
	"github.com/cardwire/cardwire/internal/streams"
)

// Timer kinds.
const (
	timerDeadline = "deadline"
	timerEnrich   = "enrich"
	// timerEarly ends the wait of a kept event: counted unmatched if no
	// encoding took it.
	timerEarly = "early"
)

// timer is the body of a message in ENCODING_TIMERS. The record stays the
// truth: the deadline handler re-reads record.Deadline, so an extension only
// changes the record and delays the same message again.
type timer struct {
	Kind       string    `json:"kind"`
	EncodingID string    `json:"encoding_id,omitempty"`
	Due        time.Time `json:"due"`
	// For timerEarly: the kept event and its target.
	EventID     string `json:"event_id,omitempty"`
	WorkspaceID string `json:"workspace_id,omitempty"`
	TargetKind  string `json:"target_kind,omitempty"`
	TargetID    string `json:"target_id,omitempty"`
}

// scheduler publishes timers as JetStream message schedules: the timer
// waits in the stream, costing no consumer anything, until the server
// publishes it to its timer subject when it is due. One schedule per
// subject (a roll-up replaces the previous one); the message id makes a
// replayed schedule of the same timer a no-op.
type scheduler struct {
	p publisher
}

func (t *scheduler) publish(ctx context.Context, token string, tm timer) error {
	subj, err := streams.ScheduleSubject(token, tm.Kind)
	if err != nil {
		return err
	}
	target, err := streams.TimerSubject(token, tm.Kind)
	if err != nil {
		return err
	}
	tm.Due = tm.Due.UTC()
	body, err := json.Marshal(tm)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: subj, Data: body, Header: nats.Header{
		jetstream.MsgIDHeader:          {token + ":" + tm.Kind + ":" + strconv.FormatInt(tm.Due.UnixMilli(), 10)},
		jetstream.ExpectedStreamHeader: {streams.TimersStream},
		"Nats-Schedule":                {"@at " + tm.Due.Format(time.RFC3339Nano)},
		"Nats-Schedule-Target":         {target},
		"Nats-Rollup":                  {"sub"},
	}}
	if _, err := t.p.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("schedule %s for %s: %w", tm.Kind, token, err)
	}
	return nil
}

func (t *scheduler) deadline(ctx context.Context, ws, id string, due time.Time) error {
	return t.publish(ctx, id, timer{Kind: timerDeadline, EncodingID: id, WorkspaceID: ws, Due: due})
}

func (t *scheduler) enrich(ctx context.Context, id string, due time.Time) error {
	return t.publish(ctx, id, timer{Kind: timerEnrich, EncodingID: id, Due: due})
}

func (t *scheduler) earlyExpiry(ctx context.Context, target encoding.TargetRef, eventID string, due time.Time) error {
	return t.publish(ctx, eventID, timer{Kind: timerEarly, Due: due, EventID: eventID,
		WorkspaceID: target.WorkspaceID, TargetKind: target.Kind, TargetID: target.ID})
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

// handleTimer is the timers consumer's handler: a timer that is due.
func (s *service) handleTimer(ctx context.Context, msg jetstream.Msg) Disposition {
	var tm timer
	if err := json.Unmarshal(msg.Data(), &tm); err != nil {
		return Disposition{Err: fmt.Errorf("%w: undecodable timer: %v", poison, err)}
	}
	// Not due yet: a timer of an earlier version (published to be delivered
	// at once and delayed), or a clock that runs behind the server's. It
	// is scheduled for when it is due.
	if wait := tm.Due.Sub(s.now()); wait > 0 {
		return s.again(ctx, tm, wait)
	}
	delivered := uint64(1)
	if meta, err := msg.Metadata(); err == nil {
		delivered = meta.NumDelivered
	}
	var again time.Duration
	var err error
	switch {
	case tm.Kind == timerDeadline && streams.ValidToken(tm.EncodingID):
		again, err = s.onDeadline(ctx, tm.WorkspaceID, tm.EncodingID, delivered)
	case tm.Kind == timerEnrich && streams.ValidToken(tm.EncodingID):
		again, err = s.onEnrich(ctx, tm.EncodingID, delivered)
	case tm.Kind == timerEarly && streams.ValidToken(tm.EventID) && streams.ValidToken(tm.WorkspaceID) && streams.ValidToken(tm.TargetID):
		err = s.onEarlyExpiry(ctx, encoding.TargetRef{WorkspaceID: tm.WorkspaceID, Kind: tm.TargetKind, ID: tm.TargetID}, tm.EventID)
	default:
		return Disposition{Err: fmt.Errorf("%w: unknown or incomplete timer %q", poison, tm.Kind)}
	}
	if err != nil {
		return Disposition{Err: err}
	}
	if again > 0 {
		return s.again(ctx, tm, again)
	}
	return Disposition{}
}

// again schedules tm once more, after d, and acknowledges this delivery;
// only if the schedule cannot be stored does the message itself come back
// after d (a delayed Nak), so the timer is never lost.
func (s *service) again(ctx context.Context, tm timer, d time.Duration) Disposition {
	token := tm.EncodingID
	if tm.Kind == timerEarly {
		token = tm.EventID
	}
	tm.Due = s.now().Add(d)
	if err := s.timers.publish(ctx, token, tm); err != nil {
		s.log.Warn().Err(err).Str("kind", tm.Kind).Str("id", token).Msg("timer not scheduled again; redelivering it instead")
		return Disposition{Delay: d}
	}
	return Disposition{}
}

// onDeadline handles a due deadline: it first repairs what a registration
// cut off half-way may have left (the claim, kept events), then, if the
// encoding is still pending, asks Seam once about it and settles, extends
// or expires it (encoding.Decide). Without Seam (track-only) it extends
// until the maximum age, then expires. It returns the delay after which to
// look again, or 0 when done.
func (s *service) onDeadline(ctx context.Context, ws, id string, delivered uint64) (time.Duration, error) {
	rec, err := s.store.Get(ctx, id)
	if errors.Is(err, encoding.ErrNotFound) {
		// A registration that never stored its record: out of the index
		// (timers of earlier versions name no workspace; they never
		// indexed).
		if streams.ValidToken(ws) {
			return 0, s.store.RemovePending(ctx, store.Pending{WorkspaceID: ws, EncodingID: id})
		}
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	policy := encoding.Policy{ConfirmTimeout: s.limits.ConfirmTimeout, MaxAge: s.limits.MaxAge}
	if d := encoding.Decide(rec, encoding.Answer{}, s.now(), policy, delivered); d.Action == encoding.Done || d.Action == encoding.Wait {
		if d.Action == encoding.Done {
			s.metrics.deadlines.WithLabelValues(deadlineAlreadyFinal).Inc()
			// Repairs an index entry its settling did not remove.
			return 0, s.store.RemovePending(ctx, store.PendingOf(rec))
		}
		return d.Retry, nil
	}
	if rec, err = s.claim(ctx, rec, store.TargetRead{}); err != nil || rec.Status.Terminal() {
		var open *encoding.OpenEncodingError
		if errors.As(err, &open) {
			return 0, nil // failed as superseded
		}
		return 0, err
	}
	ans := s.ask(ctx, rec)
	var d encoding.Decision
	_, changed, err := s.store.Update(ctx, id, func(r encoding.Record) (encoding.Record, bool) {
		d = encoding.Decide(r, ans, s.now(), policy, delivered)
		return d.Record, d.Action == encoding.Settle || d.Action == encoding.Extend
	})
	if err != nil {
		return 0, err
	}
	log := s.log.With().Str("encoding_id", id).Str("reason", d.Why).Logger()
	switch d.Action {
	case encoding.Settle:
		if changed {
			s.metrics.deadlines.WithLabelValues(deadlineResult(d.Record)).Inc()
			s.resolved(d.Record, "")
		}
	case encoding.Extend:
		s.metrics.deadlines.WithLabelValues(deadlineExtended).Inc()
		log.Info().Time("deadline", d.Deadline).Bool("track_only", s.tenants.seam(d.Record.WorkspaceID) == nil).Msg("encoding still pending; deadline extended")
	case encoding.AskAgain:
		s.metrics.deadlines.WithLabelValues(deadlineSeamError).Inc()
		log.Warn().Dur("retry_in", d.Retry).Msg("reconcile: Seam unavailable; trying again")
	case encoding.Done:
		s.metrics.deadlines.WithLabelValues(deadlineAlreadyFinal).Inc()
	}
	return d.Retry, nil
}

func deadlineResult(r encoding.Record) string {
	switch r.Status {
	case encoding.StatusIssued:
		return deadlineIssued
	case encoding.StatusExpired:
		return deadlineExpired
	}
	return deadlineFailed
}

// ask reads what Seam knows: the action attempt, or, when the encode call
// never answered (no attempt id), whether the credential is issued.
func (s *service) ask(ctx context.Context, rec encoding.Record) encoding.Answer {
	client := s.tenants.seam(rec.WorkspaceID)
	if client == nil {
		return encoding.Answer{}
	}
	ans := encoding.Answer{Asked: true}
	var err error
	switch {
	case rec.ActionAttemptID != "":
		ans.Attempt, err = client.batch.Get(ctx, rec.ActionAttemptID)
		if err == nil && ans.Attempt.Status == seam.AttemptSuccess {
			if cred, cerr := ans.Attempt.Credential(); cerr == nil {
				ans.Card = cardOf(cred)
			}
		}
	case rec.AcsCredentialID != "":
		var cred seam.Credential
		cred, err = client.api.GetCredential(ctx, rec.AcsCredentialID)
		ans.Attempt.Status = seam.AttemptPending
		if err == nil && cred.IsIssued && cred.IssuedAt != nil && !cred.IssuedAt.Before(rec.RequestedAt.Add(-s.limits.SkewMargin)) {
			ans.Attempt.Status, ans.Card = seam.AttemptSuccess, cardOf(cred)
		}
	default:
		ans.Attempt.Status = seam.AttemptPending
	}
	var apiErr *seam.APIError
	switch {
	case err == nil:
	case errors.As(err, &apiErr) && (apiErr.Status == 400 || apiErr.Status == 404 || apiErr.Status == 410 || apiErr.Status == 422):
		// Seam does not know the attempt (or credential): asking again for
		// a quarter of an hour cannot change that. 401, 403 and 429 are
		// about the key or the rate, not the encoding: asked again.
		ans.Refused = apiErr
	default:
		ans.Err = err
	}
	return ans
}

// onEnrich retries fetching the card number of an issued encoding. It
// returns the delay before the next try, or 0 when done or given up.
func (s *service) onEnrich(ctx context.Context, id string, delivered uint64) (time.Duration, error) {
	rec, err := s.store.Get(ctx, id)
	if errors.Is(err, encoding.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	client := s.tenants.seam(rec.WorkspaceID)
	if rec.Status != encoding.StatusIssued || rec.AcsCredentialID == "" || rec.CardNumber != "" || client == nil {
		return 0, nil
	}
	card, err := s.fetchCard(ctx, client, rec.AcsCredentialID)
	if err != nil {
		if s.now().Sub(rec.RequestedAt) > s.limits.MaxAge {
			s.log.Warn().Err(err).Str("encoding_id", id).Msg("card number not fetched; giving up")
			return 0, nil
		}
		return min(time.Second<<min(delivered, 6), time.Minute), nil
	}
	_, _, err = s.store.Update(ctx, id, func(r encoding.Record) (encoding.Record, bool) {
		if r.Status != encoding.StatusIssued || r.CardNumber != "" {
			return r, false
		}
		return encoding.Enrich(r, card)
	})
	return 0, err
}

// onEarlyExpiry ends the wait of a kept event. If an encoding it belongs to
// is pending (a drain cut off before applying it), it is applied now; if
// nothing took it, it is counted unmatched. Then it is forgotten.
func (s *service) onEarlyExpiry(ctx context.Context, t encoding.TargetRef, eventID string) error {
	st, err := s.store.Target(ctx, t)
	if err != nil {
		return err
	}
	var ev encoding.Event
	found := false
	for _, k := range st.Events {
		if k.Event.EventID == eventID {
			ev, found = k.Event, true
		}
	}
	if !found {
		return nil // applied and forgotten by a registration
	}
	id, verdict := st.Attribute(ev, s.limits.SkewMargin)
	if verdict == encoding.BelongsTo {
		if _, err := s.settle(ctx, id, ev); err != nil {
			return err
		}
	} else {
		s.metrics.events.WithLabelValues(eventTypeLabel(ev.EventType), string(encoding.ResultUnmatched)).Inc()
		s.log.Info().Str("event_id", ev.EventID).Str("event_type", ev.EventType).Str("target", t.String()).
			Msg("kept event expired with no encoding registered for it")
	}
	_, err = s.store.UpdateTarget(ctx, t, func(st *encoding.TargetState) (bool, error) { return st.Forget(eventID), nil })
	return err
}
