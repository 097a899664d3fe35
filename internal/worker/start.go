package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/seam"
)

// StartError reports that Seam refused to start the encode; the record is
// failed with Seam's error and Err is the *seam.APIError.
type StartError struct {
	Record encoding.Record
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

// storeAttemptTimeout bounds storing the action attempt id once Seam has
// answered; it does not depend on the caller, who may have hung up.
const storeAttemptTimeout = 10 * time.Second

// start asks Seam to encode the pending record (which, with its deadline
// and claim, already exists, so a webhook can never come before it), then
// stores the action attempt id. It is called at most once per record: a
// second encode could write a second card. If Seam does not answer, the
// record stays pending without an attempt id and the deadline settles it.
func (s *service) start(ctx context.Context, rec encoding.Record) (encoding.Record, error) {
	// The caller hanging up must not abandon an encode half-way; the Seam
	// client bounds the call.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeAttemptTimeout)
	defer cancel()
	var attempt seam.ActionAttempt
	var err error
	client := s.tenants.seam(rec.WorkspaceID)
	switch {
	case client == nil:
		// Its credentials went with a reload after Register checked.
		err = fmt.Errorf("%w: workspace %s has no Seam credentials any more", seam.ErrUnavailable, rec.WorkspaceID)
	case rec.AccessMethodID != "":
		attempt, err = client.api.EncodeAccessMethod(ctx, rec.AcsEncoderID, rec.AccessMethodID)
	default:
		attempt, err = client.api.EncodeCredential(ctx, seam.EncodeRequest{AcsEncoderID: rec.AcsEncoderID, AcsCredentialID: rec.AcsCredentialID})
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
		failed, changed, ferr := s.store.Update(ctx, rec.EncodingID, func(r encoding.Record) (encoding.Record, bool) {
			return encoding.Fail(r, encoding.ResolvedByReconcile, encoding.RecordError{Type: apiErr.Type, Message: apiErr.Message}, s.now())
		})
		if ferr != nil {
			return rec, errors.Join(&StartError{Record: rec, Err: apiErr}, ferr)
		}
		if changed {
			s.resolved(failed, "")
		}
		return failed, &StartError{Record: failed, Err: apiErr}
	}
	s.metrics.starts.WithLabelValues(startStarted).Inc()
	// Logged before it is stored: if storing fails, the log still ties the
	// attempt to the encoding.
	s.log.Info().Str("encoding_id", rec.EncodingID).Str("action_attempt_id", attempt.ActionAttemptID).
		Str("attempt_status", string(attempt.Status)).Msg("encode started at Seam")
	now := s.now()
	updated, changed, err := s.store.Update(ctx, rec.EncodingID, func(r encoding.Record) (encoding.Record, bool) {
		if r.ActionAttemptID != "" || r.Status.Terminal() {
			return r, false
		}
		r.ActionAttemptID = attempt.ActionAttemptID
		if attempt.Status == seam.AttemptError && attempt.Error != nil {
			return encoding.Fail(r, encoding.ResolvedByReconcile, encoding.RecordError{Type: attempt.Error.Type, Message: attempt.Error.Message}, now)
		}
		return r, true
	})
	if err != nil {
		s.log.Error().Err(err).Str("encoding_id", rec.EncodingID).Str("action_attempt_id", attempt.ActionAttemptID).
			Msg("action attempt id not stored; the deadline will read the credential instead")
		return rec, err
	}
	if changed && updated.Status.Terminal() {
		s.resolved(updated, "")
	}
	return updated, nil
}
