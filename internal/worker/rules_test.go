package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/streams"
)

// Rule 1: issued / reissued for a pending credential confirms it.
func TestRuleIssuedConfirms(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	for _, typ := range []string{"acs_credential.issued", "acs_credential.reissued"} {
		t.Run(typ, func(t *testing.T) {
			cred := uuid.NewString()
			rec := w.register(t, cred, "", uuid.NewString())
			require.Equal(t, encoding.StatusPending, rec.Status)
			e.outcomes.wait(t, rec.EncodingID, encoding.StatusPending)

			evID := e.seamEvent(t, typ, ws, cred, time.Now(), "")
			got := w.waitFinal(t, rec.EncodingID)
			require.Equal(t, encoding.StatusIssued, got.Status)
			require.Equal(t, typ[len("acs_credential."):], got.IssueKind)
			require.Equal(t, encoding.ResolvedByWebhook, got.ResolvedBy)
			require.Equal(t, evID, got.EventID)
			require.NotNil(t, got.ResolvedAt)

			out := e.outcomes.wait(t, rec.EncodingID, encoding.StatusIssued)
			require.Equal(t, got, out, "the outcome body is the full record")
		})
	}
}

// Rule 2: access_method.issued / .reissued, keyed by access_method_id.
func TestRuleAccessMethod(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	am := uuid.NewString()
	rec := w.register(t, "", am, uuid.NewString())
	evID := e.seamEvent(t, "access_method.reissued", ws, am, time.Now(), "")
	got := w.waitFinal(t, rec.EncodingID)
	require.Equal(t, encoding.StatusIssued, got.Status)
	require.Equal(t, "reissued", got.IssueKind)
	require.Equal(t, evID, got.EventID)
}

// Rule 3: an event before its registration is kept and applied at once.
func TestRuleEarlyEventResolvesOnRegistration(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	cred := uuid.NewString()
	evID := e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now().Add(time.Second), "")
	waitResult(t, "early", 1, w)

	rec := w.register(t, cred, "", uuid.NewString())
	require.Equal(t, encoding.StatusIssued, rec.Status, "registration answers with the settled record")
	require.Equal(t, evID, rec.EventID)
	e.outcomes.wait(t, rec.EncodingID, encoding.StatusIssued)
	require.Equal(t, 1, e.outcomes.count(rec.EncodingID, encoding.StatusPending))
}

// Rule 4: an issued that occurred before the request does not confirm it.
func TestRuleOldEventDoesNotConfirm(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	cred := uuid.NewString()
	rec := w.register(t, cred, "", uuid.NewString())
	e.seamEvent(t, "acs_credential.issued", ws, cred, rec.RequestedAt.Add(-2*time.Minute), "")
	waitResult(t, "stale", 1, w)
	got := w.call(t, http.MethodGet, "/v1/encodings/"+rec.EncodingID, "", nil).record(t)
	require.Equal(t, encoding.StatusPending, got.Status)

	// A fresh one still confirms it.
	e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
	require.Equal(t, encoding.StatusIssued, w.waitFinal(t, rec.EncodingID).Status)
}

// Rule 5: the same event_id twice changes nothing the second time.
func TestRuleSameEventTwice(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	cred := uuid.NewString()
	rec := w.register(t, cred, "", uuid.NewString())
	evID := uuid.NewString()
	at := time.Now()
	e.seamEvent(t, "acs_credential.issued", ws, cred, at, evID)
	first := w.waitFinal(t, rec.EncodingID)
	// A second webhook for the same event, outside the stream's dedupe window
	// (another webhook id).
	e.seamEvent(t, "acs_credential.issued", ws, cred, at, evID)
	waitResult(t, "duplicate", 1, w)
	again := w.call(t, http.MethodGet, "/v1/encodings/"+rec.EncodingID, "", nil).record(t)
	require.Equal(t, first, again)
	require.Equal(t, 1, e.outcomes.count(rec.EncodingID, encoding.StatusIssued), "one outcome per transition")
	require.EqualValues(t, 1, w.counter("cardwire_worker_encodings_resolved_total", "status", "issued"))
}

// Rule 6: deleted / invalidated / revoked fail the pending encoding; an
// encoder removal fails every pending encoding on it.
func TestRuleFailures(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	testCases := []struct {
		Type    string
		Access  bool
		ErrType string
	}{
		{"acs_credential.deleted", false, encoding.ErrorCredentialDeleted},
		{"acs_credential.invalidated", false, encoding.ErrorCredentialInvalidated},
		{"access_method.deleted", true, encoding.ErrorAccessMethodDeleted},
		{"access_method.revoked", true, encoding.ErrorAccessMethodRevoked},
	}
	for _, c := range testCases {
		t.Run(c.Type, func(t *testing.T) {
			id := uuid.NewString()
			var rec encoding.Record
			if c.Access {
				rec = w.register(t, "", id, uuid.NewString())
			} else {
				rec = w.register(t, id, "", uuid.NewString())
			}
			e.seamEvent(t, c.Type, ws, id, time.Now(), "")
			got := w.waitFinal(t, rec.EncodingID)
			require.Equal(t, encoding.StatusFailed, got.Status)
			require.Equal(t, c.ErrType, got.Error.Type)
		})
	}
	t.Run("acs_encoder.removed", func(t *testing.T) {
		encoder, other := uuid.NewString(), uuid.NewString()
		a := w.register(t, uuid.NewString(), "", encoder)
		b := w.register(t, "", uuid.NewString(), encoder)
		c := w.register(t, uuid.NewString(), "", other)
		e.seamEvent(t, "acs_encoder.removed", ws, encoder, time.Now(), "")
		for _, rec := range []encoding.Record{a, b} {
			got := w.waitFinal(t, rec.EncodingID)
			require.Equal(t, encoding.StatusFailed, got.Status)
			require.Equal(t, encoding.ErrorEncoderRemoved, got.Error.Type)
		}
		require.Equal(t, encoding.StatusPending, w.call(t, http.MethodGet, "/v1/encodings/"+c.EncodingID, "", nil).record(t).Status)
	})
}

// Rule 7: an event nobody registers for is counted unmatched when its TTL
// ends (it stays in SEAM_EVENTS).
func TestRuleUnmatchedExpires(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{earlyTTL: time.Second})
	cred := uuid.NewString()
	e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
	waitResult(t, "early", 1, w)
	waitResult(t, "unmatched", 1, w)
	require.EqualValues(t, 1, w.counter("cardwire_worker_events_total", "event_type", "acs_credential.issued", "result", "unmatched"))

	// Gone from the early area: a registration now stays pending.
	rec := w.register(t, cred, "", uuid.NewString())
	require.Equal(t, encoding.StatusPending, rec.Status)
}

// Rule 8: an event of another workspace never matches.
func TestRuleOtherWorkspace(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	cred := uuid.NewString()
	rec := w.register(t, cred, "", uuid.NewString())
	e.seamEvent(t, "acs_credential.issued", "00000000-0000-4000-8000-0000000000ff", cred, time.Now(), "")
	waitResult(t, "early", 1, w) // kept for that workspace, not applied here
	require.Equal(t, encoding.StatusPending, w.call(t, http.MethodGet, "/v1/encodings/"+rec.EncodingID, "", nil).record(t).Status)
}

// A terminal state is final: a later event is late and changes nothing.
func TestTerminalIsFinal(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	cred := uuid.NewString()
	rec := w.register(t, cred, "", uuid.NewString())
	e.seamEvent(t, "acs_credential.deleted", ws, cred, time.Now(), "")
	require.Equal(t, encoding.StatusFailed, w.waitFinal(t, rec.EncodingID).Status)
	e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
	waitResult(t, "late", 1, w)
	require.Equal(t, encoding.StatusFailed, w.call(t, http.MethodGet, "/v1/encodings/"+rec.EncodingID, "", nil).record(t).Status)
	require.Zero(t, e.outcomes.count(rec.EncodingID, encoding.StatusIssued))
}

// An event the worker can never act on is moved to the dead-letter subject
// with the reason, counted, and does not block the events behind it.
func TestBadEventIsDeadLettered(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	subj, err := streams.EventSubject(ws, "acs_credential.issued")
	require.NoError(t, err)
	_, err = e.js.Publish(t.Context(), subj, []byte(`{"event_id":"e1","event_type":"acs_credential.issued","workspace_id":"`+ws+`"}`),
		jetstream.WithMsgID("msg_bad"))
	require.NoError(t, err)
	cred := uuid.NewString()
	rec := w.register(t, cred, "", uuid.NewString())
	e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
	require.Equal(t, encoding.StatusIssued, w.waitFinal(t, rec.EncodingID).Status, "the bad event does not block others")

	waitResult(t, "dead_lettered", 1, w)
	st, err := e.js.Stream(t.Context(), streams.EventsStream)
	require.NoError(t, err)
	dl, err := st.GetLastMsgForSubject(t.Context(), streams.DeadLetterSubject(streams.WorkerConsumer))
	require.NoError(t, err)
	require.Contains(t, dl.Header.Get(streams.HeaderDeadLetterReason), "occurred_at missing")
	require.Equal(t, subj, dl.Header.Get("Cardwire-Original-Subject"))
	require.Contains(t, string(dl.Data), `"event_id":"e1"`)
}

// A transient failure (here: the bucket is gone) is retried with a delay,
// and after the consumer's MaxDeliver deliveries the event is dead-lettered
// with the last error: never dropped silently, never retried for ever.
func TestFailingEventIsRetriedThenDeadLettered(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	require.NoError(t, e.js.DeleteKeyValue(t.Context(), streams.EncodingsBucket))
	e.seamEvent(t, "acs_credential.issued", ws, uuid.NewString(), time.Now(), "")

	waitResult(t, "dead_lettered", 1, w)
	require.EqualValues(t, e.owned.MaxDeliver-1, w.counter("cardwire_worker_events_total", "result", "retried"))
	st, err := e.js.Stream(t.Context(), streams.EventsStream)
	require.NoError(t, err)
	dl, err := st.GetLastMsgForSubject(t.Context(), streams.DeadLetterSubject(streams.WorkerConsumer))
	require.NoError(t, err)
	require.Equal(t, fmt.Sprint(e.owned.MaxDeliver), dl.Header.Get(streams.HeaderDeadLetterDeliveries))
	require.NotEmpty(t, dl.Header.Get(streams.HeaderDeadLetterReason))
}

// A re-encode: the credential's previous encoding is final, and the
// reissued event of the next one arrives before it is registered. It must
// not be lost as late on the old encoding: it occurred after the next one
// was requested, so it is that one's.
func TestReencodeEarlyEvent(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	cred := uuid.NewString()
	first := w.register(t, cred, "", uuid.NewString())
	e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
	require.Equal(t, encoding.StatusIssued, w.waitFinal(t, first.EncodingID).Status)

	evID := e.seamEvent(t, "acs_credential.reissued", ws, cred, time.Now().Add(time.Second), "")
	waitResult(t, "late", 1, w) // belongs to the old encoding for now, kept for the next
	second := w.register(t, cred, "", uuid.NewString())
	require.Equal(t, encoding.StatusIssued, second.Status)
	require.Equal(t, "reissued", second.IssueKind)
	require.Equal(t, evID, second.EventID)
}

// A duplicate of an event, arriving after the outcome stream's dedupe
// window, does not publish the outcome a second time.
func TestLateDuplicateDoesNotRepublish(t *testing.T) {
	const window = 200 * time.Millisecond
	e := newEnv(t, func(o *streams.WorkerOptions) { o.OutcomesDuplicates = window })
	w := e.startWorker(t, workerConfig{})
	cred := uuid.NewString()
	rec := w.register(t, cred, "", uuid.NewString())
	evID := uuid.NewString()
	at := time.Now()
	e.seamEvent(t, "acs_credential.issued", ws, cred, at, evID)
	e.outcomes.wait(t, rec.EncodingID, encoding.StatusIssued)
	// Wait until the stream's dedupe window has passed for everything
	// published so far (server state, so polled with a probe id published
	// after the outcome): a republished outcome would now be stored.
	probe := "probe-" + uuid.NewString()
	_, err := e.js.Publish(t.Context(), "encodings.probe.x", nil, jetstream.WithMsgID(probe))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ack, err := e.js.Publish(context.Background(), "encodings.probe.x", nil, jetstream.WithMsgID(probe))
		return err == nil && !ack.Duplicate
	}, 10*time.Second, 20*time.Millisecond)
	e.seamEvent(t, "acs_credential.issued", ws, cred, at, evID)
	waitResult(t, "duplicate", 1, w)
	// Published after the duplicate was handled, so it lands after any copy.
	other := w.register(t, uuid.NewString(), "", uuid.NewString())
	e.outcomes.wait(t, other.EncodingID, encoding.StatusPending)
	require.Equal(t, 1, e.outcomes.count(rec.EncodingID, encoding.StatusIssued))
}

// Track-only (no Seam API key): nobody can ask Seam, so a pending encoding
// is extended at each deadline (only a webhook can settle it) and expires
// at the maximum age, through the timer stream.
func TestTrackOnlyDeadlineExpires(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{confirm: 200 * time.Millisecond, maxAge: time.Second})
	rec := w.register(t, uuid.NewString(), "", uuid.NewString())
	got := w.waitFinal(t, rec.EncodingID)
	require.Equal(t, encoding.StatusExpired, got.Status)
	require.Equal(t, encoding.ResolvedByDeadline, got.ResolvedBy)
	require.Equal(t, "expired", got.Error.Type)
	require.False(t, got.ResolvedAt.Before(rec.RequestedAt.Add(time.Second)), "not before the maximum age")
	e.outcomes.wait(t, rec.EncodingID, encoding.StatusExpired)
	// Counted once the deadline's update returns, which may be after its
	// outcome is out.
	require.Eventually(t, func() bool { return w.counter("cardwire_worker_deadlines_total", "result", "expired") == 1 },
		10*time.Second, 5*time.Millisecond)
	require.Positive(t, w.counter("cardwire_worker_deadlines_total", "result", "extended"))
}

// Skew: an event that occurred 2s "before" a request, with no earlier
// encoding of its credential, still confirms it (clocks differ).
func TestRuleSkewConfirms(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	t.Run("event first", func(t *testing.T) {
		cred := uuid.NewString()
		evID := e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now().Add(-2*time.Second), "")
		waitResult(t, "early", 1, w)
		rec := w.register(t, cred, "", uuid.NewString())
		require.Equal(t, encoding.StatusIssued, rec.Status)
		require.Equal(t, evID, rec.EventID)
	})
	t.Run("registration first", func(t *testing.T) {
		cred := uuid.NewString()
		rec := w.register(t, cred, "", uuid.NewString())
		evID := e.seamEvent(t, "acs_credential.issued", ws, cred, rec.RequestedAt.Add(-2*time.Second), "")
		got := w.waitFinal(t, rec.EncodingID)
		require.Equal(t, encoding.StatusIssued, got.Status)
		require.Equal(t, evID, got.EventID)
	})
}

// A caller that registers an encode it started itself, after its webhook
// came, on a credential whose previous encoding is final: the event is
// kept as late for the previous one and, because it occurred after the new
// request, it settles the new one at registration.
func TestRuleRegisteredAfterItsEventOnAReencode(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	cred := uuid.NewString()
	first := w.register(t, cred, "", uuid.NewString())
	r := w.call(t, http.MethodDelete, "/v1/encodings/"+first.EncodingID, "", nil)
	require.Equal(t, http.StatusOK, r.Status)

	started := time.Now().UTC()
	evID := e.seamEvent(t, "acs_credential.reissued", ws, cred, started.Add(500*time.Millisecond), "")
	waitResult(t, "late", 1, w)
	r = w.call(t, http.MethodPost, "/v1/encodings", "", map[string]any{
		"workspace_id": ws, "acs_encoder_id": uuid.NewString(), "acs_credential_id": cred,
		"action_attempt_id": uuid.NewString(), "requested_at": started,
	})
	require.Equal(t, http.StatusCreated, r.Status, "body %s", r.Body)
	second := r.record(t)
	require.Equal(t, encoding.StatusIssued, second.Status)
	require.Equal(t, evID, second.EventID)
	require.Equal(t, encoding.StatusCanceled, w.call(t, http.MethodGet, "/v1/encodings/"+first.EncodingID, "", nil).record(t).Status)
}
