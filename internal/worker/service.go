package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/store"
	"github.com/cardwire/cardwire/internal/streams"
)

// seamAPI is the part of the Seam client the worker uses.
type seamAPI interface {
	EncodeCredential(ctx context.Context, req seam.EncodeRequest) (seam.ActionAttempt, error)
	EncodeAccessMethod(ctx context.Context, acsEncoderID, accessMethodID string) (seam.ActionAttempt, error)
	GetActionAttempt(ctx context.Context, id string) (seam.ActionAttempt, error)
	ListActionAttempts(ctx context.Context, ids []string) ([]seam.ActionAttempt, error)
	GetCredential(ctx context.Context, id string) (seam.Credential, error)
}

// service is the encode-request lifecycle over the store: registration,
// settling by events, cancellation, deadlines, enrichment. It never
// publishes an outcome: every change it stores is a record revision, and
// the outbox publishes those.
type service struct {
	store   *store.Store
	timers  *scheduler
	tenants *tenants
	unindex *unindexer
	limits  encoding.Limits
	enrich  time.Duration
	metrics *metrics
	log     zerolog.Logger
	now     func() time.Time
	// settledHere, when set, hears of every encoding this process settles,
	// before its revision comes round the feed (the pending listing's
	// read-your-write).
	settledHere func(id string)
	// latest, when set, is the latest revision of a pending encoding
	// this process has seen (the feed's), where a settle starts instead
	// of reading the record.
	latest func(id string) store.Revision
}

// Register stores a pending encoding and applies the events that came
// before it, then (with no action_attempt_id) starts the encode at Seam.
// Every step is idempotent: with an Idempotency-Key, a repeat of a request
// that failed or was cut off half-way resumes it and returns its record
// (replayed=true); the same key with another body fails with
// encoding.ErrIdempotencyKeyReused. It fails with *encoding.ValidationError,
// *encoding.OpenEncodingError, encoding.ErrTrackOnly, *StartError, or a
// storage error (then a replay resumes).
func (s *service) Register(ctx context.Context, req encoding.RegisterRequest, key string) (rec encoding.Record, replayed bool, err error) {
	if err := req.Validate(s.limits, s.now()); err != nil {
		return encoding.Record{}, false, err
	}
	if req.Starts() && s.tenants.seam(req.WorkspaceID) == nil {
		return encoding.Record{}, false, encoding.ErrTrackOnly
	}
	idem := store.Idempotency{EncodingID: uuid.NewString(), Fingerprint: req.Fingerprint()}
	if key != "" {
		got, created, err := s.store.Remember(ctx, req.WorkspaceID, key, idem)
		if err != nil {
			return encoding.Record{}, false, err
		}
		if !created {
			if got.Fingerprint != idem.Fingerprint {
				return encoding.Record{}, false, encoding.ErrIdempotencyKeyReused
			}
			idem, replayed = got, true
		}
	}
	rec, err = s.register(ctx, req, idem, key, replayed)
	return rec, replayed, err
}

// register creates the record, unless a replay finds it stored, and
// completes the registration. Only a replay's id can be stored already: a
// fresh one (no key, or a key seen for the first time) is not read first.
func (s *service) register(ctx context.Context, req encoding.RegisterRequest, idem store.Idempotency, key string, replayed bool) (encoding.Record, error) {
	id := idem.EncodingID
	var rec encoding.Record
	var target store.TargetRead // the target as create found it
	err := encoding.ErrNotFound
	if replayed {
		rec, err = s.store.Get(ctx, id)
	}
	if errors.Is(err, encoding.ErrNotFound) {
		rec, target, err = s.create(ctx, req, id)
	}
	if err != nil {
		return encoding.Record{}, err
	}
	if rec, err = s.claimStored(ctx, rec, target); err != nil {
		return rec, err
	}
	if !req.Starts() || rec.Status.Terminal() || rec.ActionAttemptID != "" || idem.EncodeSent {
		return rec, nil
	}
	if key != "" {
		// Written before the call: a replay never encodes twice.
		if err := s.store.MarkEncodeSent(ctx, rec.WorkspaceID, key); err != nil {
			return rec, err
		}
	}
	return s.start(ctx, rec)
}

// create writes the deadline timer, then the pending record. The timer goes
// first: once the record exists, a lost webhook can never leave it pending
// for ever; a timer whose record was never written finds nothing and is
// dropped. A target with a pending encoding is refused before anything is
// written; the target's state as read then is returned, for the claim to
// start from.
func (s *service) create(ctx context.Context, req encoding.RegisterRequest, id string) (encoding.Record, store.TargetRead, error) {
	rec := req.NewRecord(id, s.now(), s.limits)
	target, err := s.refuseOpen(ctx, rec)
	if err != nil {
		return encoding.Record{}, store.TargetRead{}, err
	}
	if err := s.timers.deadline(ctx, rec.WorkspaceID, id, rec.Deadline); err != nil {
		return encoding.Record{}, store.TargetRead{}, err
	}
	// Indexed before it exists, like the timer: the deadline takes an
	// entry whose record never came out of the index again.
	if err := s.store.AddPending(ctx, rec); err != nil {
		return encoding.Record{}, store.TargetRead{}, err
	}
	stored, created, err := s.store.Create(ctx, rec)
	if err != nil {
		return encoding.Record{}, store.TargetRead{}, err
	}
	if !created {
		return stored, store.TargetRead{}, nil // not this request's record: the claim reads afresh
	}
	s.log.Info().Str("encoding_id", id).Str("target", rec.Target().String()).Str("action_attempt_id", rec.ActionAttemptID).
		Str("to", string(encoding.StatusPending)).Msg("encoding registered")
	return stored, target, nil
}

// refuseOpen fails with *encoding.OpenEncodingError if the record's target
// has another encoding pending; it returns the target as read.
func (s *service) refuseOpen(ctx context.Context, rec encoding.Record) (store.TargetRead, error) {
	target, err := s.store.ReadTarget(ctx, rec.Target())
	if err != nil {
		return store.TargetRead{}, err
	}
	return target, s.openOther(ctx, target.State, rec.EncodingID)
}

func (s *service) openOther(ctx context.Context, st encoding.TargetState, id string) error {
	latest, ok := st.Latest()
	if !ok || latest.EncodingID == id {
		return nil
	}
	other, err := s.store.Get(ctx, latest.EncodingID)
	switch {
	case errors.Is(err, encoding.ErrNotFound):
		return nil
	case err != nil:
		return err
	case !other.Status.Terminal():
		return &encoding.OpenEncodingError{EncodingID: other.EncodingID}
	}
	return nil
}

// claimAttempts bounds the tries of claim in a registration whose record
// is stored; a failure that outlasts them is repaired at the deadline.
const claimAttempts = 3

// claimStored runs claim for a record that is stored, trying again on a
// storage error. A registration whose record is stored answers with it: if
// the claim still fails, events for it are kept meanwhile (there is no
// claim to attribute them to) and its deadline makes the claim and applies
// them, so it is never a 5xx for a record that will settle.
func (s *service) claimStored(ctx context.Context, rec encoding.Record, target store.TargetRead) (encoding.Record, error) {
	var err error
	for i := range claimAttempts {
		var got encoding.Record
		got, err = s.claim(ctx, rec, target)
		target = store.TargetRead{} // a retry reads it again
		var open *encoding.OpenEncodingError
		if err == nil || errors.As(err, &open) {
			return got, err
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(25<<i) * time.Millisecond) // a short back-off inside one request
	}
	s.log.Error().Err(err).Str("encoding_id", rec.EncodingID).Str("target", rec.Target().String()).
		Msg("registration stored but not yet reachable by events; its deadline repairs it")
	return rec, nil
}

// claim makes a stored record reachable: listed on its encoder, then one of
// its target's encodings, then settled by the events kept for it. It is
// idempotent, so a replay and the deadline repair a registration cut off
// between these writes. A record that lost the race for its target to
// another pending encoding is failed (superseded) and the error returned.
// target, when it is a read, is where the target's compare-and-set starts.
func (s *service) claim(ctx context.Context, rec encoding.Record, target store.TargetRead) (encoding.Record, error) {
	if err := s.store.AddToEncoder(ctx, rec.WorkspaceID, rec.AcsEncoderID, rec.EncodingID); err != nil {
		return rec, err
	}
	var open *encoding.OpenEncodingError
	st, err := s.store.UpdateTargetFrom(ctx, rec.Target(), target, func(st *encoding.TargetState) (bool, error) {
		if st.Has(rec.EncodingID) {
			return false, nil
		}
		if err := s.openOther(ctx, *st, rec.EncodingID); err != nil {
			return false, err
		}
		st.AddClaim(encoding.Claim{EncodingID: rec.EncodingID, RequestedAt: rec.RequestedAt})
		return true, nil
	})
	if errors.As(err, &open) {
		failed, _, ferr := s.store.Update(ctx, rec.EncodingID, func(r encoding.Record) (encoding.Record, bool) {
			return encoding.Fail(r, encoding.ResolvedByReconcile, encoding.RecordError{Type: encoding.ErrorSuperseded,
				Message: "another encoding of this credential was registered at the same time: " + open.EncodingID}, s.now())
		})
		if ferr == nil {
			s.resolved(failed, "")
		}
		return failed, errors.Join(err, ferr)
	}
	if err != nil {
		return rec, err
	}
	return s.drain(ctx, rec, st)
}

// drain applies the events kept in st that belong to rec, oldest first,
// then forgets them. Applying first means a crash in between leaves them
// kept, to be applied (as duplicates, harmlessly) by the next drain.
func (s *service) drain(ctx context.Context, rec encoding.Record, st encoding.TargetState) (encoding.Record, error) {
	evs := st.EventsFor(rec.EncodingID, s.limits.SkewMargin)
	if len(evs) == 0 {
		return rec, nil
	}
	ids := make([]string, 0, len(evs))
	for _, ev := range evs {
		// Counted once already (early or late) when it was consumed.
		if _, err := s.settle(ctx, rec.EncodingID, ev); err != nil {
			return rec, err
		}
		ids = append(ids, ev.EventID)
	}
	if _, err := s.store.UpdateTarget(ctx, rec.Target(), func(st *encoding.TargetState) (bool, error) {
		return st.Forget(ids...), nil
	}); err != nil {
		return rec, err
	}
	return s.store.Get(ctx, rec.EncodingID)
}

// Apply acts on one Seam event and reports what it did. An error means the
// event should be retried; applying it again is harmless.
func (s *service) Apply(ctx context.Context, ev encoding.Event) (encoding.Result, error) {
	if _, ok := encoding.EffectOf(ev.EventType); !ok {
		return encoding.ResultIgnored, nil
	}
	t, _ := ev.Target()
	if t.Kind == encoding.KindEncoder {
		return s.encoderRemoved(ctx, ev, t.ID)
	}
	// A few rounds at most: each one means a registration changed the
	// target between attributing the event and keeping it.
	for range 4 {
		var id string
		var verdict encoding.Verdict
		var kept bool
		if _, err := s.store.UpdateTarget(ctx, t, func(st *encoding.TargetState) (bool, error) {
			id, verdict = st.Attribute(ev, s.limits.SkewMargin)
			kept = false
			if verdict == encoding.NoEncodingYet {
				kept = st.Keep(ev, s.now().Add(s.limits.EarlyTTL))
			}
			return kept, nil
		}); err != nil {
			return "", err
		}
		switch verdict {
		case encoding.OlderThanAll:
			s.log.Info().Str("event_id", ev.EventID).Str("target", t.String()).Time("occurred_at", ev.OccurredAt).
				Msg("event older than every encoding of its target; ignored")
			return encoding.ResultStale, nil
		case encoding.NoEncodingYet:
			// The expiry timer goes on every delivery (deduplicated), so a
			// failed publish is retried with the event.
			if err := s.timers.earlyExpiry(ctx, t, ev.EventID, s.now().Add(s.limits.EarlyTTL)); err != nil {
				return "", err
			}
			return encoding.ResultEarly, nil
		}
		res, err := s.settle(ctx, id, ev)
		if err != nil || res != encoding.ResultLate {
			return res, err
		}
		// It belongs to an encoding that is already final. Keep it all the
		// same, for the case of an encoding registered later whose request
		// came before the event: then the event is that one's. Only if the
		// attribution still holds; otherwise attribute again.
		still := false
		if _, err := s.store.UpdateTarget(ctx, t, func(st *encoding.TargetState) (bool, error) {
			now, v := st.Attribute(ev, s.limits.SkewMargin)
			still = v == encoding.BelongsTo && now == id
			return still && st.Keep(ev, s.now().Add(s.limits.EarlyTTL)), nil
		}); err != nil {
			return "", err
		}
		if still {
			if err := s.timers.earlyExpiry(ctx, t, ev.EventID, s.now().Add(s.limits.EarlyTTL)); err != nil {
				return "", err
			}
			return encoding.ResultLate, nil
		}
	}
	return "", fmt.Errorf("event %s: its target kept changing; retrying", ev.EventID)
}

// encoderRemoved fails every pending encoding started on the encoder
// before the removal. Any error fails the whole event, which is retried:
// applying it again to an encoding it already failed is a duplicate.
func (s *service) encoderRemoved(ctx context.Context, ev encoding.Event, encoder string) (encoding.Result, error) {
	st, err := s.store.Encoder(ctx, ev.WorkspaceID, encoder)
	if err != nil {
		return "", err
	}
	result := encoding.ResultUnmatched
	for _, id := range st.Encodings {
		rec, err := s.store.Get(ctx, id)
		if errors.Is(err, encoding.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", err
		}
		if rec.Status.Terminal() && rec.EventID != ev.EventID {
			continue
		}
		res, err := s.settle(ctx, id, ev)
		if err != nil {
			return "", err
		}
		if res == encoding.ResultMatched || result == encoding.ResultUnmatched {
			result = res
		}
	}
	return result, nil
}

// settle applies ev to one encoding with a compare-and-set, from the
// revision the feed has seen when it has one.
func (s *service) settle(ctx context.Context, id string, ev encoding.Event) (encoding.Result, error) {
	var seen store.Revision
	if s.latest != nil {
		seen = s.latest(id)
	}
	card, seen, cardErr := s.cardFor(ctx, id, ev, seen)
	var res encoding.Result
	rec, _, err := s.store.UpdateFrom(ctx, id, seen, func(r encoding.Record) (encoding.Record, bool) {
		next, r2, changed := encoding.Apply(r, ev, s.limits.SkewMargin, s.now())
		res = r2
		if changed && card != nil {
			next, _ = encoding.Enrich(next, *card)
		}
		return next, changed
	})
	if errors.Is(err, encoding.ErrNotFound) {
		return encoding.ResultStale, nil // the record outlived its TTL
	}
	if err != nil {
		return "", err
	}
	switch res {
	case encoding.ResultMatched:
		if cardErr != nil && rec.Status == encoding.StatusIssued {
			// Seam slow or down: the issued record goes out now, the card
			// number follows as a revision.
			s.log.Info().Err(cardErr).Str("encoding_id", id).Msg("card number not available yet; settling without it")
			if err := s.timers.enrich(ctx, id, s.now()); err != nil {
				s.log.Warn().Err(err).Str("encoding_id", id).Msg("card-number retry not scheduled")
			}
		}
		s.resolved(rec, ev.EventID)
		s.metrics.eventLag.Observe(s.now().Sub(ev.OccurredAt).Seconds())
	case encoding.ResultLate:
		s.log.Warn().Str("encoding_id", id).Str("event_id", ev.EventID).Str("event_type", ev.EventType).
			Str("status", string(rec.Status)).Str("resolved_by", rec.ResolvedBy).Time("occurred_at", ev.OccurredAt).
			Msg("late event for an encoding that is already final; recorded, state unchanged")
	case encoding.ResultStale:
		s.log.Info().Str("encoding_id", id).Str("event_id", ev.EventID).Time("occurred_at", ev.OccurredAt).
			Time("requested_at", rec.RequestedAt).Msg("event older than the encoding request; ignored")
	}
	return res, nil
}

// cardFor fetches the card number an issued event will add to a pending
// credential encoding, before the state change, so that the issued record
// already has it. It returns a nil card when there is nothing to fetch,
// and an error only when a fetch was needed and failed (bounded by the
// enrich timeout: the outcome is never held up longer). It judges from
// seen when the feed has a revision (a stale one costs at worst a fetch
// not needed), else from a read, which it returns for the settle to start
// from.
func (s *service) cardFor(ctx context.Context, id string, ev encoding.Event, seen store.Revision) (*encoding.Card, store.Revision, error) {
	client := s.tenants.seam(ev.WorkspaceID)
	if client == nil {
		return nil, seen, nil
	}
	if eff, _ := encoding.EffectOf(ev.EventType); !eff.Success() {
		return nil, seen, nil
	}
	if seen.KV == 0 {
		read, err := s.store.GetRevision(ctx, id)
		if err != nil {
			return nil, seen, nil
		}
		seen = read
	}
	rec := seen.Record
	if rec.AcsCredentialID == "" {
		return nil, seen, nil
	}
	if _, res, _ := encoding.Apply(rec, ev, s.limits.SkewMargin, s.now()); res != encoding.ResultMatched {
		return nil, seen, nil
	}
	card, err := s.fetchCard(ctx, client, rec.AcsCredentialID)
	if err != nil {
		return nil, seen, err
	}
	return &card, seen, nil
}

// fetchCard reads a credential within the enrich timeout and fails unless
// it has a card number.
func (s *service) fetchCard(ctx context.Context, client *tenantClient, credentialID string) (encoding.Card, error) {
	fctx, cancel := context.WithTimeout(ctx, s.enrich)
	defer cancel()
	cred, err := client.api.GetCredential(fctx, credentialID)
	if err != nil {
		return encoding.Card{}, err
	}
	if cred.CardNumber == nil || *cred.CardNumber == "" {
		return encoding.Card{}, errors.New("credential has no card number yet")
	}
	return cardOf(cred), nil
}

func cardOf(c seam.Credential) encoding.Card {
	card := encoding.Card{IssuedAt: c.IssuedAt}
	if c.CardNumber != nil {
		card.Number = *c.CardNumber
	}
	return card
}

// resolved records a final status: out of the pending index, metrics and
// the log line. An index entry not removed here is removed at the deadline.
func (s *service) resolved(rec encoding.Record, eventID string) {
	s.unindex.remove(store.PendingOf(rec))
	if s.settledHere != nil {
		s.settledHere(rec.EncodingID)
	}
	s.metrics.resolved.WithLabelValues(string(rec.Status), rec.ResolvedBy).Inc()
	s.metrics.workspaceResolved.WithLabelValues(s.tenants.label(rec.WorkspaceID), string(rec.Status)).Inc()
	s.metrics.resolveDuration.Observe(s.now().Sub(rec.RequestedAt).Seconds())
	ev := s.log.Info()
	if rec.Error != nil {
		ev = ev.Str("error_type", rec.Error.Type)
	}
	ev.Str("encoding_id", rec.EncodingID).Str("target", rec.Target().String()).Str("event_id", eventID).
		Uint64("revision", rec.Revision).Str("from", string(encoding.StatusPending)).Str("to", string(rec.Status)).
		Str("resolved_by", rec.ResolvedBy).Msg("encoding settled")
}

// Cancel settles a pending encoding as canceled. Canceling a canceled
// encoding again answers the record (a retried DELETE); it fails with
// *encoding.TerminalError if the encoding is otherwise final, or
// encoding.ErrNotFound.
func (s *service) Cancel(ctx context.Context, id string) (encoding.Record, error) {
	if !streams.ValidToken(id) {
		return encoding.Record{}, encoding.ErrNotFound
	}
	rec, changed, err := s.store.Update(ctx, id, func(r encoding.Record) (encoding.Record, bool) {
		return encoding.Cancel(r, s.now())
	})
	switch {
	case err != nil:
		return encoding.Record{}, err
	case changed:
		s.resolved(rec, "")
		return rec, nil
	case rec.Status == encoding.StatusCanceled:
		return rec, nil
	}
	return rec, &encoding.TerminalError{EncodingID: id, Status: rec.Status}
}

// Get returns one record, or encoding.ErrNotFound.
func (s *service) Get(ctx context.Context, id string) (encoding.Record, error) {
	if !streams.ValidToken(id) {
		return encoding.Record{}, encoding.ErrNotFound
	}
	return s.store.Get(ctx, id)
}
