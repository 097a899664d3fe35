package main

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/streams"
)

type deadLetterJSON struct {
	Seq         uint64              `json:"seq"`
	Time        time.Time           `json:"time"`
	Consumer    string              `json:"consumer"`
	Subject     string              `json:"subject"`
	EventID     string              `json:"event_id"`
	EventType   string              `json:"event_type"`
	WorkspaceID string              `json:"workspace_id"`
	Reason      string              `json:"reason"`
	Deliveries  int                 `json:"deliveries"`
	Headers     map[string][]string `json:"headers"`
	Body        json.RawMessage     `json:"body"`
}

func listDeadLetters(t *testing.T, env map[string]string) []deadLetterJSON {
	t.Helper()
	var got struct {
		DeadLetters []deadLetterJSON `json:"dead_letters"`
	}
	cliJSON(t, env, &got, "deadletters", "list")
	return got.DeadLetters
}

// The worker dead-letters an event it failed on (its bucket was down for
// every delivery) and one it can never parse; the CLI lists and shows
// them, a retry redelivers the first (past the stream's dedupe on the
// event id) and the worker settles its encoding, and purge removes the
// other.
func TestDeadLetters(t *testing.T) {
	s := newStack(t, true)
	require.Contains(t, cliOK(t, s.env, "deadletters", "list"), "no dead letters in SEAM_EVENTS")

	encoder, cred := uuid.NewString(), uuid.NewString()
	id := s.register(t, encoder, cred)
	s.faults.Store(true)
	s.encode(t, encoder, cred) // the sim's webhook → receiver → SEAM_EVENTS → a failing worker
	eventSubject, err := streams.EventSubject(ws, "acs_credential.issued")
	require.NoError(t, err)
	msg, err := streams.EventMsg([]byte(`{"event_id":"ev-poison","event_type":"acs_credential.issued","workspace_id":"`+ws+`"}`),
		streams.Event{EventID: "ev-poison", EventType: "acs_credential.issued", WorkspaceID: ws})
	require.NoError(t, err)
	_, err = s.js.PublishMsg(t.Context(), msg)
	require.NoError(t, err)

	var dls []deadLetterJSON
	require.Eventually(t, func() bool { dls = listDeadLetters(t, s.env); return len(dls) == 2 }, 10*time.Second, 20*time.Millisecond)
	s.faults.Store(false)
	failed, poison := dls[0], dls[1]
	if failed.EventID == "ev-poison" {
		failed, poison = poison, failed
	}
	events := s.sim.Events()
	require.Len(t, events, 1)
	var ev struct {
		EventID string `json:"event_id"`
	}
	require.NoError(t, json.Unmarshal(events[0], &ev))
	require.Equal(t, deadLetterJSON{Seq: failed.Seq, Time: failed.Time, Consumer: streams.WorkerConsumer, Subject: eventSubject,
		EventID: ev.EventID, EventType: "acs_credential.issued", WorkspaceID: ws, Reason: failed.Reason, Deliveries: 2}, failed)
	require.Contains(t, failed.Reason, errBucketDown.Error())
	require.WithinDuration(t, time.Now(), failed.Time, 10*time.Second)
	require.Equal(t, eventSubject, poison.Subject)
	require.Contains(t, poison.Reason, "occurred_at missing")
	require.Equal(t, 1, poison.Deliveries, "never parsed: dead-lettered at once")

	text := cliOK(t, s.env, "deadletters", "list")
	require.Regexp(t, `SEQ\s+TIME\s+SUBJECT\s+EVENT_ID\s+DELIVERIES\s+REASON`, text)
	require.Contains(t, text, eventSubject)

	var shown deadLetterJSON
	cliJSON(t, s.env, &shown, "deadletters", "show", strconv.FormatUint(failed.Seq, 10))
	require.Equal(t, []string{ev.EventID}, shown.Headers[streams.HeaderEventID])
	require.JSONEq(t, string(events[0]), string(shown.Body), "the event's body, as stored")
	require.Contains(t, cliOK(t, s.env, "deadletters", "show", strconv.FormatUint(poison.Seq, 10)), "occurred_at missing")

	original, err := s.js.Stream(t.Context(), streams.EventsStream)
	require.NoError(t, err)
	orig, err := original.GetLastMsgForSubject(t.Context(), eventSubject)
	require.NoError(t, err)
	_, err = runCLI(t, s.env, "deadletters", "retry", strconv.FormatUint(orig.Sequence, 10))
	require.ErrorContains(t, err, "is not a dead letter (its subject is "+eventSubject)
	_, err = runCLI(t, s.env, "deadletters", "purge", strconv.FormatUint(orig.Sequence, 10))
	require.ErrorContains(t, err, "is not a dead letter")

	var retried struct {
		Retried []struct {
			Seq     uint64 `json:"seq"`
			NewSeq  uint64 `json:"new_seq"`
			Subject string `json:"subject"`
			EventID string `json:"event_id"`
		} `json:"retried"`
	}
	cliJSON(t, s.env, &retried, "deadletters", "retry", strconv.FormatUint(failed.Seq, 10))
	require.Len(t, retried.Retried, 1)
	require.Equal(t, eventSubject, retried.Retried[0].Subject)
	require.Equal(t, ev.EventID, retried.Retried[0].EventID)
	republished, err := original.GetMsg(t.Context(), retried.Retried[0].NewSeq)
	require.NoError(t, err)
	require.Equal(t, ev.EventID, republished.Header.Get(streams.HeaderEventID), "the original headers")
	require.Empty(t, republished.Header.Get(streams.HeaderDeadLetterReason))

	var rec encoding.Record
	cliJSON(t, s.env, &rec, "encodings", "get", id, "--wait", "10s")
	require.Equal(t, encoding.StatusIssued, rec.Status, "the worker settled it from the retried event")
	require.Equal(t, ev.EventID, rec.EventID)

	left := listDeadLetters(t, s.env)
	require.Len(t, left, 1)
	require.Equal(t, poison.Seq, left[0].Seq)
	_, err = runCLI(t, s.env, "deadletters", "retry", strconv.FormatUint(failed.Seq, 10))
	require.ErrorContains(t, err, "no message "+strconv.FormatUint(failed.Seq, 10)+" in SEAM_EVENTS")

	var purged struct {
		Purged []uint64 `json:"purged"`
	}
	cliJSON(t, s.env, &purged, "deadletters", "purge", "--all")
	require.Equal(t, []uint64{poison.Seq}, purged.Purged)
	require.Empty(t, listDeadLetters(t, s.env))
	require.Contains(t, cliOK(t, s.env, "deadletters", "purge", "--all"), "no dead letters")
}
