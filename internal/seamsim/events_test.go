package seamsim_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
)

// clock is an Options.Now the test sets; near real time, so that the
// svix-timestamp stays within the receiver's tolerance.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// listEvents calls /events/list and returns its events as the answer's
// bytes.
func (e *env) listEvents(t *testing.T, body map[string]any) []json.RawMessage {
	t.Helper()
	a := e.call(t, seamsim.PathListEvents, body)
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	var events []json.RawMessage
	require.NoError(t, json.Unmarshal(a.body["events"], &events))
	require.NotNil(t, events, "an empty list is [], not null")
	return events
}

func field(t *testing.T, ev json.RawMessage, name string) any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(ev, &m))
	return m[name]
}

func eventIDs(t *testing.T, events []json.RawMessage) []any {
	t.Helper()
	ids := []any{}
	for _, ev := range events {
		ids = append(ids, field(t, ev, "event_id"))
	}
	return ids
}

// Every event is logged, whatever became of its webhook, as the exact
// bytes that were (or would have been) delivered.
func TestEventsListKeepsEveryEvent(t *testing.T) {
	e := newEnv(t, func(o *seamsim.Options) { o.RetryDelays = []time.Duration{} })
	since := stamp(time.Now().Add(-time.Minute))
	const (
		delivered = "c0000000-0000-4000-8000-0000000000d1"
		dropped   = "c0000000-0000-4000-8000-0000000000d2"
		refused   = "c0000000-0000-4000-8000-0000000000d3"
	)

	e.encodeCredential(t, delivered)
	got := e.rc.next(t)

	e.sim.DropNextWebhook()
	e.settled(t, e.encodeCredential(t, dropped).ActionAttemptID)

	e.rc.setAnswer(func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	e.encodeCredential(t, refused)
	failed := e.rc.next(t) // its only attempt: no retries

	// A failed encode makes no event, as in Seam.
	require.Equal(t, http.StatusOK, e.call(t, seamsim.PathSimulateWillFail, map[string]string{"acs_encoder_id": encoderID}).status)
	require.Equal(t, seam.AttemptError, e.settled(t, e.encodeCredential(t, credID).ActionAttemptID).Status)

	events := e.listEvents(t, map[string]any{"since": since})
	require.Len(t, events, 3)
	require.Equal(t, []any{refused, dropped, delivered}, []any{
		field(t, events[0], "acs_credential_id"), field(t, events[1], "acs_credential_id"), field(t, events[2], "acs_credential_id"),
	}, "newest first")
	require.Equal(t, string(got.body), string(events[2]), "the delivered body, byte for byte")
	require.Equal(t, string(failed.body), string(events[0]), "the body of the refused delivery")
	for _, ev := range events {
		require.Equal(t, "acs_credential.issued", field(t, ev, "event_type"))
		require.Equal(t, workspace, field(t, ev, "workspace_id"))
		require.NotEmpty(t, field(t, ev, "created_at"))
		require.NotEmpty(t, field(t, ev, "occurred_at"))
	}
	require.Equal(t, []json.RawMessage{events[2], events[1], events[0]}, e.sim.Events(), "Events is oldest first")
	require.Equal(t, 1, e.sim.Delivered())
}

func TestEventsListFilters(t *testing.T) {
	c := &clock{t: time.Now().UTC().Truncate(time.Second).Add(-time.Minute)}
	t0 := c.Now()
	e := newEnv(t, func(o *seamsim.Options) { o.Now = c.Now })
	e.sim.AddEncoder(encoderID)
	e.sim.AddCredential(credID)
	const other = "c0000000-0000-4000-8000-000000000002"
	// Three events, a second apart: issued (credID), issued (other),
	// reissued (credID).
	at := make([]time.Time, 3)
	for i, cred := range []string{credID, other, credID} {
		at[i] = t0.Add(time.Duration(i+1) * time.Second)
		c.set(at[i])
		e.encodeCredential(t, cred)
		e.rc.next(t)
	}
	all := e.sim.Events()
	require.Len(t, all, 3)
	for i, ev := range all {
		require.Equal(t, stamp(at[i]), stamp(mustTime(t, field(t, ev, "created_at"))))
	}
	id := func(i int) any { return field(t, all[i], "event_id") }

	testCases := []struct {
		Name string
		Body map[string]any
		Want []any
	}{
		{"since: all, newest first", map[string]any{"since": stamp(t0)}, []any{id(2), id(1), id(0)}},
		{"since excludes an event created at since", map[string]any{"since": stamp(at[0])}, []any{id(2), id(1)}},
		{"since, in another zone", map[string]any{"since": at[0].In(time.FixedZone("", 2*3600)).Format(time.RFC3339)}, []any{id(2), id(1)}},
		{"since the last: none", map[string]any{"since": stamp(at[2])}, []any{}},
		{"between excludes both ends", map[string]any{"between": []string{stamp(at[0]), stamp(at[2])}}, []any{id(1)}},
		{"between just outside both ends", map[string]any{"between": []string{stamp(at[0].Add(-time.Millisecond)), stamp(at[2].Add(time.Millisecond))}}, []any{id(2), id(1), id(0)}},
		{"event_types", map[string]any{"since": stamp(t0), "event_types": []string{"acs_credential.reissued"}}, []any{id(2)}},
		{"event_types, several", map[string]any{"since": stamp(t0), "event_types": []string{"acs_credential.issued", "acs_credential.reissued"}}, []any{id(2), id(1), id(0)}},
		{"event_types, none matching", map[string]any{"since": stamp(t0), "event_types": []string{"acs_encoder.removed"}}, []any{}},
		{"event_type", map[string]any{"since": stamp(t0), "event_type": "acs_credential.issued"}, []any{id(1), id(0)}},
		{"limit keeps the newest", map[string]any{"since": stamp(t0), "limit": 2}, []any{id(2), id(1)}},
		{"limit with between", map[string]any{"between": []string{stamp(t0), stamp(at[2])}, "limit": 1}, []any{id(1)}},
	}
	for _, tc := range testCases {
		t.Run(tc.Name, func(t *testing.T) {
			events := e.listEvents(t, tc.Body)
			require.Equal(t, tc.Want, eventIDs(t, events))
			for _, ev := range events {
				require.Contains(t, all, ev, "the logged bytes")
			}
		})
	}
}

func mustTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "%v is not a string", v)
	ts, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return ts
}

func TestEventsListDefaultLimit(t *testing.T) {
	sim, err := seamsim.New(seamsim.Options{
		APIKey: apiKey, WorkspaceID: workspace, EncodeDelay: time.Millisecond,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	require.NoError(t, err)
	e := &env{sim: sim}
	e.api = newAPI(t, sim)
	since := stamp(time.Now().Add(-time.Minute))
	const n = seamsim.DefaultEventsLimit + 1
	for range n {
		e.encodeCredential(t, credID)
	}
	require.Eventually(t, func() bool { return len(sim.Events()) == n }, wait, tick)

	events := e.listEvents(t, map[string]any{"since": since})
	require.Len(t, events, seamsim.DefaultEventsLimit)
	all := sim.Events()
	require.Equal(t, all[n-1], events[0], "the newest first")
	require.Equal(t, all[1], events[len(events)-1], "the oldest left out")
	require.Len(t, e.listEvents(t, map[string]any{"since": since, "limit": n}), n)
}

func TestEventsListBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	now := stamp(time.Now())
	testCases := []struct {
		Name string
		Body map[string]any
	}{
		{"neither since nor between", map[string]any{"event_types": []string{"acs_credential.issued"}}},
		{"both since and between", map[string]any{"since": now, "between": []string{now, now}}},
		{"since not a timestamp", map[string]any{"since": "yesterday"}},
		{"between with one timestamp", map[string]any{"between": []string{now}}},
		{"between with three", map[string]any{"between": []string{now, now, now}}},
		{"between not timestamps", map[string]any{"between": []string{now, "later"}}},
		{"limit zero", map[string]any{"since": now, "limit": 0}},
		{"limit negative", map[string]any{"since": now, "limit": -5}},
		{"limit not whole", map[string]any{"since": now, "limit": 1.5}},
		{"since not a string", map[string]any{"since": 7}},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			a := e.call(t, seamsim.PathListEvents, c.Body)
			require.Equal(t, http.StatusBadRequest, a.status, "%s", a.raw)
			require.Equal(t, "invalid_input", a.errType(t))
		})
	}
}

// Each workspace lists only its own events, reached by its key or by the
// personal access token.
func TestMultiEventsAndWebhooksPerWorkspace(t *testing.T) {
	e := newMulti(t, nil)
	since := stamp(time.Now().Add(-time.Minute))
	for _, c := range []struct{ auth, workspace, credential string }{
		{"Bearer " + keyAurora, "", "card-aurora"},
		{"Bearer " + pat, wsBorealis, "card-borealis"},
	} {
		a := e.call(t, c.auth, c.workspace, seamsim.PathEncodeCredential, map[string]string{"acs_encoder_id": encoderID, "acs_credential_id": c.credential})
		require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	}
	bodies := map[string]string{} // workspace → delivered body
	for range 2 {
		d := e.next(t)
		bodies[d.event["workspace_id"].(string)] = string(d.body)
	}

	testCases := []struct {
		Name, Auth, Workspace, WantWorkspace, WantCredential string
	}{
		{"Aurora by its key", "Bearer " + keyAurora, "", wsAurora, "card-aurora"},
		{"Aurora by the PAT", "Bearer " + pat, wsAurora, wsAurora, "card-aurora"},
		{"Borealis by the PAT", "Bearer " + pat, wsBorealis, wsBorealis, "card-borealis"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			a := e.call(t, c.Auth, c.Workspace, seamsim.PathListEvents, map[string]any{"since": since})
			require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
			var events []json.RawMessage
			require.NoError(t, json.Unmarshal(a.body["events"], &events))
			require.Len(t, events, 1)
			require.Equal(t, c.WantWorkspace, field(t, events[0], "workspace_id"))
			require.Equal(t, c.WantCredential, field(t, events[0], "acs_credential_id"))
			require.Equal(t, bodies[c.WantWorkspace], string(events[0]))
		})
	}
	require.Len(t, e.m.Workspace(wsAurora).Events(), 1)

	// A webhook made in Borealis is Borealis's only.
	a := e.call(t, "Bearer "+pat, wsBorealis, seamsim.PathCreateWebhook, map[string]any{"url": "http://127.0.0.1:9/elsewhere"})
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	listed := func(auth, ws string) int {
		a := e.call(t, auth, ws, seamsim.PathListWebhooks, map[string]any{})
		require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
		var hooks []seam.Webhook
		require.NoError(t, json.Unmarshal(a.body["webhooks"], &hooks))
		return len(hooks)
	}
	require.Equal(t, 2, listed("Bearer "+pat, wsBorealis), "MultiOptions.WebhookURL and the new one")
	require.Equal(t, 1, listed("Bearer "+keyAurora, ""))
}
