package encoding_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
)

// Attribution: an event belongs to the latest encoding of its target
// requested before it occurred; the skew margin counts only when none was.
func TestAttribute(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	const margin = 30 * time.Second
	a := encoding.Claim{EncodingID: "A", RequestedAt: t0}
	b := encoding.Claim{EncodingID: "B", RequestedAt: t0.Add(time.Minute)}
	at := func(d time.Duration) encoding.Event {
		return encoding.Event{EventID: "e", EventType: "acs_credential.issued", WorkspaceID: "ws", AcsCredentialID: "c", OccurredAt: t0.Add(d)}
	}
	testCases := []struct {
		Name    string
		Claims  []encoding.Claim
		Event   encoding.Event
		ID      string
		Verdict encoding.Verdict
	}{
		{"no encoding yet", nil, at(0), "", encoding.NoEncodingYet},
		{"after the only request", []encoding.Claim{a}, at(time.Second), "A", encoding.BelongsTo},
		{"at the request itself", []encoding.Claim{a}, at(0), "A", encoding.BelongsTo},
		{"2s before the only request: skew", []encoding.Claim{a}, at(-2 * time.Second), "A", encoding.BelongsTo},
		{"older than the margin", []encoding.Claim{a}, at(-margin - time.Millisecond), "", encoding.OlderThanAll},
		{"the previous card's late success stays with it", []encoding.Claim{a, b}, at(15 * time.Second), "A", encoding.BelongsTo},
		{"after the re-encode was requested", []encoding.Claim{a, b}, at(time.Minute + time.Second), "B", encoding.BelongsTo},
		{"just before the re-encode: no skew when an earlier one exists", []encoding.Claim{a, b}, at(time.Minute - time.Second), "A", encoding.BelongsTo},
		{"claims out of request order", []encoding.Claim{b, a}, at(2 * time.Minute), "B", encoding.BelongsTo},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			st := encoding.TargetState{Encodings: c.Claims}
			id, v := st.Attribute(c.Event, margin)
			require.Equal(t, c.Verdict, v)
			require.Equal(t, c.ID, id)
		})
	}
}

// Kept events: once, bounded, and found for the encoding they belong to.
func TestTargetStateKeep(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var st encoding.TargetState
	ev := encoding.Event{EventID: "e1", EventType: "acs_credential.issued", WorkspaceID: "ws", AcsCredentialID: "c", OccurredAt: t0}
	require.True(t, st.Keep(ev, t0.Add(time.Minute)))
	require.False(t, st.Keep(ev, t0.Add(time.Minute)), "kept once")
	require.Empty(t, st.EventsFor("A", time.Second), "nothing registered")
	st.AddClaim(encoding.Claim{EncodingID: "A", RequestedAt: t0.Add(-time.Second)})
	st.AddClaim(encoding.Claim{EncodingID: "A", RequestedAt: t0.Add(-time.Second)})
	require.Len(t, st.Encodings, 1, "claimed once")
	require.Equal(t, []encoding.Event{ev}, st.EventsFor("A", time.Second))
	require.Equal(t, t0.Add(time.Minute), st.Events[0].Until)
	require.True(t, st.Forget("e1"))
	require.Empty(t, st.Events)
	require.False(t, st.Forget("e1"), "forgetting again changes nothing")
	for i := range 100 {
		st.AddClaim(encoding.Claim{EncodingID: string(rune('a'+i%26)) + time.Duration(i).String(), RequestedAt: t0.Add(time.Duration(i) * time.Second)})
		st.Keep(encoding.Event{EventID: time.Duration(i).String(), OccurredAt: t0}, t0.Add(time.Duration(i)*time.Second))
	}
	require.LessOrEqual(t, len(st.Encodings), 16)
	require.LessOrEqual(t, len(st.Events), 64)
}

// Failure-type events wait out the order grace from their arrival;
// successes never wait.
func TestHoldFor(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	const grace = 5 * time.Second
	for _, c := range []struct {
		Type string
		Now  time.Duration
		Want time.Duration
	}{
		{"acs_credential.issued", 0, 0},
		{"access_method.reissued", 0, 0},
		{"acs_credential.deleted", time.Second, 4 * time.Second},
		{"acs_credential.invalidated", 0, grace},
		{"access_method.revoked", 6 * time.Second, 0},
		{"acs_encoder.removed", 2 * time.Second, 3 * time.Second},
		{"lock.locked", 0, 0},
	} {
		t.Run(c.Type, func(t *testing.T) {
			ev := encoding.Event{EventType: c.Type}
			require.Equal(t, c.Want, encoding.HoldFor(ev, t0, t0.Add(c.Now), grace))
		})
	}
}
