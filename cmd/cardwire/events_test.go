package main

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/streams"
)

type replayJSON struct {
	WorkspaceID   string    `json:"workspace_id"`
	Since         time.Time `json:"since"`
	Until         time.Time `json:"until"`
	Found         int       `json:"found"`
	Missed        int       `json:"missed"`
	AlreadyStored int       `json:"already_stored"`
	Skipped       int       `json:"skipped"`
}

// An event Seam generated but whose webhook never came is found by a
// replay and stored once; the one the receiver got is already stored; a
// second replay finds both stored.
func TestEventsReplay(t *testing.T) {
	s := newStack(t, false)
	s.encode(t, uuid.NewString(), uuid.NewString())
	require.Eventually(t, func() bool { return s.sim.Delivered() == 1 }, 5*time.Second, 10*time.Millisecond)
	s.sim.DropNextWebhook()
	s.encode(t, uuid.NewString(), uuid.NewString())
	require.Eventually(t, func() bool { return len(s.sim.Events()) == 2 }, 5*time.Second, 10*time.Millisecond)
	stored := func() uint64 {
		st, err := s.js.Stream(t.Context(), streams.EventsStream)
		require.NoError(t, err)
		return st.CachedInfo().State.Msgs
	}
	require.EqualValues(t, 1, stored())

	var first replayJSON
	cliJSON(t, s.env, &first, "events", "replay", "--since", "1m")
	require.Equal(t, replayJSON{WorkspaceID: ws, Since: first.Since, Until: first.Until, Found: 2, Missed: 1, AlreadyStored: 1}, first)
	require.WithinDuration(t, time.Now().Add(-time.Minute), first.Since, 5*time.Second)
	require.WithinDuration(t, time.Now(), first.Until, 5*time.Second)
	require.EqualValues(t, 2, stored(), "the missed event is stored")

	var second replayJSON
	cliJSON(t, s.env, &second, "--output", "json", "events", "replay", "--since", first.Since.Format(time.RFC3339Nano))
	require.Equal(t, 2, second.Found)
	require.Zero(t, second.Missed)
	require.Equal(t, 2, second.AlreadyStored)
	require.EqualValues(t, 2, stored(), "stored once")

	text := cliOK(t, s.env, "events", "replay", "--since", "10m", "--until", time.Now().Add(time.Second).Format(time.RFC3339))
	require.Contains(t, text, "FOUND  MISSED  ALREADY_STORED  SKIPPED")
	require.Regexp(t, `2\s+0\s+2\s+0\n`, text)

	var none replayJSON
	cliJSON(t, s.env, &none, "events", "replay", "--since", "2h", "--until", "1h")
	require.Zero(t, none.Found, "nothing happened then")
}
