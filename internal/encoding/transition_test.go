package encoding_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	. "github.com/cardwire/cardwire/internal/encoding"
)

// The pure state transition behind every matching rule.
func TestApply(t *testing.T) {
	requested := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	now := requested.Add(time.Minute)
	pending := Record{EncodingID: "e1", WorkspaceID: "ws", AcsCredentialID: "c1", Status: StatusPending, RequestedAt: requested}
	issued := pending
	issued.Status, issued.EventID = StatusIssued, "ev-first"
	ev := func(typ, id string, at time.Time) Event {
		return Event{EventID: id, EventType: typ, WorkspaceID: "ws", OccurredAt: at, AcsCredentialID: "c1"}
	}
	const margin = 30 * time.Second
	testCases := []struct {
		Name      string
		Rec       Record
		Ev        Event
		Result    Result
		Status    Status
		IssueKind string
		ErrType   string
	}{
		{"issued confirms", pending, ev("acs_credential.issued", "ev1", requested.Add(5*time.Second)), ResultMatched, StatusIssued, "issued", ""},
		{"reissued confirms as reissued", pending, ev("acs_credential.reissued", "ev1", requested.Add(time.Second)), ResultMatched, StatusIssued, "reissued", ""},
		{"access method issued", pending, ev("access_method.issued", "ev1", requested), ResultMatched, StatusIssued, "issued", ""},
		{"within the skew margin", pending, ev("acs_credential.issued", "ev1", requested.Add(-margin)), ResultMatched, StatusIssued, "issued", ""},
		{"older than the margin is stale", pending, ev("acs_credential.issued", "ev1", requested.Add(-margin-time.Millisecond)), ResultStale, StatusPending, "", ""},
		{"deleted fails", pending, ev("acs_credential.deleted", "ev1", requested), ResultMatched, StatusFailed, "", ErrorCredentialDeleted},
		{"invalidated fails", pending, ev("acs_credential.invalidated", "ev1", requested), ResultMatched, StatusFailed, "", ErrorCredentialInvalidated},
		{"access method revoked fails", pending, ev("access_method.revoked", "ev1", requested), ResultMatched, StatusFailed, "", ErrorAccessMethodRevoked},
		{"access method deleted fails", pending, ev("access_method.deleted", "ev1", requested), ResultMatched, StatusFailed, "", ErrorAccessMethodDeleted},
		{"encoder removed fails", pending, ev("acs_encoder.removed", "ev1", requested), ResultMatched, StatusFailed, "", ErrorEncoderRemoved},
		{"same event again is a duplicate", issued, ev("acs_credential.issued", "ev-first", requested), ResultDuplicate, StatusIssued, "", ""},
		{"another event after final is late", issued, ev("acs_credential.deleted", "ev2", requested), ResultLate, StatusIssued, "", ""},
		{"other workspace never matches", pending, Event{EventID: "ev1", EventType: "acs_credential.issued", WorkspaceID: "other", OccurredAt: requested, AcsCredentialID: "c1"}, ResultStale, StatusPending, "", ""},
		{"no effect type is ignored", pending, ev("access_method.card_encoding_required", "ev1", requested), ResultIgnored, StatusPending, "", ""},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			next, res, changed := Apply(c.Rec, c.Ev, margin, now)
			require.Equal(t, c.Result, res)
			require.Equal(t, res == ResultMatched, changed)
			require.Equal(t, c.Status, next.Status)
			if !changed {
				require.Equal(t, c.Rec, next, "an unchanged record is returned as it was")
				return
			}
			require.Equal(t, c.IssueKind, next.IssueKind)
			require.Equal(t, ResolvedByWebhook, next.ResolvedBy)
			require.Equal(t, c.Ev.EventID, next.EventID)
			require.Equal(t, now, *next.ResolvedAt)
			if c.ErrType == "" {
				require.Nil(t, next.Error)
			} else {
				require.Equal(t, c.ErrType, next.Error.Type)
			}
		})
	}
}
