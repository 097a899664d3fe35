package encoding

import (
	"context"
	"errors"

	"github.com/cardwire/cardwire/internal/seam"
)

// StartError reports that Seam refused to start the encode; the record is
// failed with Seam's error and Err is the *seam.APIError.
type StartError struct {
	Record Record
	Err    *seam.APIError
}

func (e *StartError) Error() string { return "seam refused the encode: " + e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Start results, label values of cardwire_worker_encodes_started_total.
const (
	startStarted  = "started"
	startRejected = "rejected"
	startUnknown  = "unknown"
)

// start asks Seam to encode the pending record (which, with its deadline,
// already exists, so a webhook can never come before it), then stores the
// action attempt id. It is called once per record and never retried: a
// second encode could write a second card. If Seam does not answer, the
// record stays pending without an attempt id and the deadline settles it.
func (s *Service) start(ctx context.Context, rec Record) (Record, error) {
	// The caller hanging up must not abandon an encode half-way; the Seam
	// client bounds the call.
	ctx = context.WithoutCancel(ctx)
	var attempt seam.ActionAttempt
	var err error
	if rec.AccessMethodID != "" {
		attempt, err = s.o.Seam.EncodeAccessMethod(ctx, rec.AcsEncoderID, rec.AccessMethodID)
	} else {
		attempt, err = s.o.Seam.EncodeCredential(ctx, seam.EncodeRequest{AcsEncoderID: rec.AcsEncoderID, AcsCredentialID: rec.AcsCredentialID})
	}
	var apiErr *seam.APIError
	switch {
	case err == nil && attempt.ActionAttemptID == "":
		err = errors.New("seam answered without an action_attempt_id")
		fallthrough
	case err != nil && !errors.As(err, &apiErr), err != nil && apiErr.Status >= 500:
		// No usable answer, or a 5xx: the encode may or may not have
		// started, so it is not sent again; the deadline settles it.
		s.metrics.starts.WithLabelValues(startUnknown).Inc()
		s.log.Warn().Err(err).Str("encoding_id", rec.EncodingID).Msg("encode call got no usable answer; the deadline will settle it")
		return rec, nil
	case err != nil:
		// A 4xx (429 included): Seam did not start it.
		s.metrics.starts.WithLabelValues(startRejected).Inc()
		failErr := s.finish(ctx, rec.EncodingID, "", func(r *Record) {
			r.Status, r.ResolvedBy = StatusFailed, ResolvedByReconcile
			r.Error = &RecordError{Type: apiErr.Type, Message: apiErr.Message}
		})
		latest, _, getErr := s.store.Get(ctx, rec.EncodingID)
		if getErr == nil {
			rec = latest
		}
		return rec, errors.Join(&StartError{Record: rec, Err: apiErr}, failErr)
	}
	s.metrics.starts.WithLabelValues(startStarted).Inc()
	updated, _, err := s.store.Update(ctx, rec.EncodingID, func(r Record) (Record, bool) {
		if r.ActionAttemptID != "" || r.Status.Terminal() {
			return r, false
		}
		r.ActionAttemptID = attempt.ActionAttemptID
		return r, true
	})
	if err != nil {
		return rec, err
	}
	if err := s.store.put(ctx, attemptKey(rec.WorkspaceID, attempt.ActionAttemptID), rec.EncodingID); err != nil {
		s.log.Warn().Err(err).Str("encoding_id", rec.EncodingID).Msg("action attempt index not written")
	}
	s.log.Info().Str("encoding_id", rec.EncodingID).Str("action_attempt_id", attempt.ActionAttemptID).Msg("encode started at Seam")
	if attempt.Status == seam.AttemptError && attempt.Error != nil {
		e := RecordError{Type: attempt.Error.Type, Message: attempt.Error.Message}
		_ = s.finish(ctx, rec.EncodingID, "", func(r *Record) {
			r.Status, r.ResolvedBy, r.Error = StatusFailed, ResolvedByReconcile, &e
		})
		if latest, _, err := s.store.Get(ctx, rec.EncodingID); err == nil {
			updated = latest
		}
	}
	return updated, nil
}
