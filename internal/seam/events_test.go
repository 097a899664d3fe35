package seam_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
)

func at(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return ts
}

func TestListEventsRequestBody(t *testing.T) {
	testCases := []struct {
		Name     string
		Request  func(t *testing.T) seam.ListEventsRequest
		WantBody string
	}{
		{"since", func(t *testing.T) seam.ListEventsRequest {
			since := at(t, "2025-06-16T16:54:19.946Z")
			return seam.ListEventsRequest{Since: &since}
		}, `{"since":"2025-06-16T16:54:19.946Z"}`},
		{"since in another zone, below a millisecond: rounded down, in UTC", func(t *testing.T) seam.ListEventsRequest {
			since := at(t, "2025-06-16T18:54:19.9469999+02:00")
			return seam.ListEventsRequest{Since: &since}
		}, `{"since":"2025-06-16T16:54:19.946Z"}`},
		{"between, filters and limit", func(t *testing.T) seam.ListEventsRequest {
			b := [2]time.Time{at(t, "2025-06-16T16:00:00Z"), at(t, "2025-06-16T17:00:00Z")}
			return seam.ListEventsRequest{Between: &b, EventTypes: []string{"acs_credential.issued", "acs_credential.reissued"}, Limit: 100}
		}, `{"between":["2025-06-16T16:00:00.000Z","2025-06-16T17:00:00.000Z"],"event_types":["acs_credential.issued","acs_credential.reissued"],"limit":100}`},
		{"between below a millisecond: widened at both ends", func(t *testing.T) seam.ListEventsRequest {
			b := [2]time.Time{at(t, "2025-06-16T16:00:00.0019Z"), at(t, "2025-06-16T17:00:00.0000001Z")}
			return seam.ListEventsRequest{Between: &b}
		}, `{"between":["2025-06-16T16:00:00.001Z","2025-06-16T17:00:00.001Z"]}`},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			s := newStub(t, serve(http.StatusOK, golden(t, "events_list.json")))
			client, _ := newClient(t, s.srv.URL, nil)
			_, err := client.ListEvents(t.Context(), c.Request(t))
			require.NoError(t, err)
			r, body := s.lastRequest()
			require.Equal(t, http.MethodPost, r.Method)
			require.Equal(t, "/events/list", r.URL.Path)
			require.JSONEq(t, c.WantBody, string(body))
		})
	}
}

func TestListEventsRequestValidated(t *testing.T) {
	now := time.Now()
	testCases := []struct {
		Name    string
		Request seam.ListEventsRequest
		WantErr string
	}{
		{"neither since nor between", seam.ListEventsRequest{EventTypes: []string{"acs_credential.issued"}}, "exactly one of Since and Between"},
		{"both", seam.ListEventsRequest{Since: &now, Between: &[2]time.Time{now, now.Add(time.Hour)}}, "exactly one of Since and Between"},
		{"between reversed", seam.ListEventsRequest{Between: &[2]time.Time{now, now.Add(-time.Hour)}}, "Between[0]"},
		{"between empty", seam.ListEventsRequest{Between: &[2]time.Time{now, now}}, "Between[0]"},
		{"negative limit", seam.ListEventsRequest{Since: &now, Limit: -1}, "Limit"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			s := newStub(t, serve(http.StatusOK, golden(t, "events_list.json")))
			client, _ := newClient(t, s.srv.URL, nil)
			_, err := client.ListEvents(t.Context(), c.Request)
			require.ErrorIs(t, err, seam.ErrInvalidRequest)
			require.ErrorContains(t, err, c.WantErr)
			require.Zero(t, s.calls.Load(), "refused before any request")
			_, err = json.Marshal(c.Request)
			require.ErrorIs(t, err, seam.ErrInvalidRequest)
		})
	}
}

// The events are Seam's bytes, not a re-encoding: the catch-up republishes
// them as the webhook body.
func TestListEventsKeepsSeamsBytes(t *testing.T) {
	raw := golden(t, "events_list.json")
	s := newStub(t, serve(http.StatusOK, raw))
	client, _ := newClient(t, s.srv.URL, nil)
	since := at(t, "2025-06-16T00:00:00Z")
	events, err := client.ListEvents(t.Context(), seam.ListEventsRequest{Since: &since})
	require.NoError(t, err)
	require.Len(t, events, 3)
	wantTypes := []string{"acs_credential.reissued", "acs_encoder.removed", "acs_credential.issued"}
	for i, ev := range events {
		require.True(t, bytes.Contains(raw, ev), "event %d is a verbatim slice of the answer: %s", i, ev)
		var head struct {
			EventType string `json:"event_type"`
		}
		require.NoError(t, json.Unmarshal(ev, &head))
		require.Equal(t, wantTypes[i], head.EventType)
	}
	require.Contains(t, string(events[0]), "\n      \"event_description\"", "indentation kept")
	require.Equal(t, byte('{'), events[2][0])
	require.Equal(t, byte('}'), events[2][len(events[2])-1])
}

func TestListEventsErrors(t *testing.T) {
	since := time.Now().Add(-time.Hour)
	testCases := []struct {
		Name      string
		Status    int
		Body      string
		WantType  string
		WantCalls int32
	}{
		{"unauthorized", http.StatusUnauthorized, `{"error":{"type":"unauthorized","message":"Unauthorized"},"ok":false}`, "unauthorized", 1},
		{"invalid input", http.StatusBadRequest, `{"error":{"type":"invalid_input","message":"Must specify either since or between"},"ok":false}`, "invalid_input", 1},
		{"unavailable, retried as a read", http.StatusServiceUnavailable, `{"error":{"type":"service_unavailable","message":"down"},"ok":false}`, "service_unavailable", 3},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			s := newStub(t, serve(c.Status, []byte(c.Body)))
			client, _ := newClient(t, s.srv.URL, nil)
			events, err := client.ListEvents(t.Context(), seam.ListEventsRequest{Since: &since})
			var apiErr *seam.APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, c.Status, apiErr.Status)
			require.Equal(t, c.WantType, apiErr.Type)
			require.Equal(t, "req-123", apiErr.RequestID)
			require.Empty(t, events)
			require.Equal(t, c.WantCalls, s.calls.Load())
		})
	}
}

func TestWebhookRequests(t *testing.T) {
	const id = "4c8d2f1e-6a3b-4e9d-8c7f-1b2a3d4e5f60"
	created := seam.Webhook{
		WebhookID: id, URL: "https://cardwire.example.com/webhooks/seam",
		EventTypes: []string{"acs_credential.issued", "acs_credential.reissued"},
		Secret:     "whsec_dGhpcyBpcyBub3QgYSByZWFsIHNlY3JldCE=",
	}
	testCases := []struct {
		Name     string
		Golden   string
		Call     func(t *testing.T, c *seam.Client) any
		WantPath string
		WantBody string
		Want     any
	}{
		{"create", "webhook_create.json", func(t *testing.T, c *seam.Client) any {
			w, err := c.CreateWebhook(t.Context(), created.URL, created.EventTypes)
			require.NoError(t, err)
			return w
		}, "/webhooks/create", `{"url":"https://cardwire.example.com/webhooks/seam","event_types":["acs_credential.issued","acs_credential.reissued"]}`, created},
		{"create for every event type", "webhook_create.json", func(t *testing.T, c *seam.Client) any {
			_, err := c.CreateWebhook(t.Context(), created.URL, nil)
			require.NoError(t, err)
			return nil
		}, "/webhooks/create", `{"url":"https://cardwire.example.com/webhooks/seam"}`, nil},
		{"get", "webhook_create.json", func(t *testing.T, c *seam.Client) any {
			w, err := c.GetWebhook(t.Context(), id)
			require.NoError(t, err)
			return w
		}, "/webhooks/get", `{"webhook_id":"` + id + `"}`, created},
		{"list", "webhooks_list.json", func(t *testing.T, c *seam.Client) any {
			ws, err := c.ListWebhooks(t.Context())
			require.NoError(t, err)
			return ws
		}, "/webhooks/list", `{}`, []seam.Webhook{
			{WebhookID: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", URL: created.URL, EventTypes: []string{"*"}, Secret: "whsec_b2xkIHNlY3JldCwgc3RpbGwgbm90IHJlYWw="},
			created,
			{WebhookID: "9f8e7d6c-5b4a-4392-8a1b-0c9d8e7f6a5b", URL: "https://old.example.com/hooks"},
		}},
		{"delete", "", func(t *testing.T, c *seam.Client) any {
			require.NoError(t, c.DeleteWebhook(t.Context(), id))
			return nil
		}, "/webhooks/delete", `{"webhook_id":"` + id + `"}`, nil},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			answer := []byte(`{"ok":true}`)
			if c.Golden != "" {
				answer = golden(t, c.Golden)
			}
			s := newStub(t, serve(http.StatusOK, answer))
			client, _ := newClient(t, s.srv.URL, nil)
			got := c.Call(t, client)
			if c.Want != nil {
				require.Equal(t, c.Want, got)
			}
			r, body := s.lastRequest()
			require.Equal(t, http.MethodPost, r.Method)
			require.Equal(t, c.WantPath, r.URL.Path)
			require.JSONEq(t, c.WantBody, string(body))
		})
	}
}

func TestWebhookErrors(t *testing.T) {
	unavailable := []byte(`{"error":{"type":"service_unavailable","message":"down"},"ok":false}`)
	testCases := []struct {
		Name      string
		Status    int
		Body      []byte
		Call      func(t *testing.T, c *seam.Client) error
		WantType  string
		WantCalls int32
	}{
		{"get unknown", http.StatusNotFound, golden(t, "webhook_not_found.json"), func(t *testing.T, c *seam.Client) error {
			_, err := c.GetWebhook(t.Context(), "nope")
			return err
		}, "webhook_not_found", 1},
		{"delete unknown", http.StatusNotFound, golden(t, "webhook_not_found.json"), func(t *testing.T, c *seam.Client) error {
			return c.DeleteWebhook(t.Context(), "nope")
		}, "webhook_not_found", 1},
		{"list unauthorized", http.StatusUnauthorized, []byte(`{"error":{"type":"unauthorized","message":"Unauthorized"},"ok":false}`), func(t *testing.T, c *seam.Client) error {
			_, err := c.ListWebhooks(t.Context())
			return err
		}, "unauthorized", 1},
		{"list retried as a read", http.StatusServiceUnavailable, unavailable, func(t *testing.T, c *seam.Client) error {
			_, err := c.ListWebhooks(t.Context())
			return err
		}, "service_unavailable", 3},
		{"create never retried: a second endpoint would be registered", http.StatusServiceUnavailable, unavailable, func(t *testing.T, c *seam.Client) error {
			_, err := c.CreateWebhook(t.Context(), "https://cardwire.example.com/webhooks/seam", nil)
			return err
		}, "service_unavailable", 1},
		{"delete never retried", http.StatusServiceUnavailable, unavailable, func(t *testing.T, c *seam.Client) error {
			return c.DeleteWebhook(t.Context(), "4c8d2f1e-6a3b-4e9d-8c7f-1b2a3d4e5f60")
		}, "service_unavailable", 1},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			s := newStub(t, serve(c.Status, c.Body))
			client, _ := newClient(t, s.srv.URL, nil)
			err := c.Call(t, client)
			var apiErr *seam.APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, c.Status, apiErr.Status)
			require.Equal(t, c.WantType, apiErr.Type)
			require.Equal(t, c.WantCalls, s.calls.Load())
		})
	}
}

func TestWebhookSecretNeverPrinted(t *testing.T) {
	const secret = "whsec_dGhpcyBpcyBub3QgYSByZWFsIHNlY3JldCE="
	w := seam.Webhook{WebhookID: "wh-1", URL: "https://cardwire.example.com/webhooks/seam", EventTypes: []string{"*"}, Secret: secret}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x", "%T %v"} {
		for name, v := range map[string]any{"value": w, "pointer": &w, "slice": []seam.Webhook{w}, "in a struct": struct{ W seam.Webhook }{w}} {
			out := fmt.Sprintf(verb, v)
			require.NotContains(t, out, secret, "%s of a %s: %s", verb, name, out)
			require.NotContains(t, out, "dGhpcyBpcyBub3Q", "%s of a %s: %s", verb, name, out)
		}
	}
	require.Equal(t, "{webhook_id:wh-1 url:https://cardwire.example.com/webhooks/seam event_types:[*] secret:<secret>}", w.String())
	require.Contains(t, seam.Webhook{WebhookID: "wh-2"}.String(), "secret:none")

	// The JSON is Seam's wire shape, the secret in it.
	b, err := json.Marshal(w)
	require.NoError(t, err)
	require.Contains(t, string(b), secret)
}

// The same calls against the simulator: events are the webhook bodies'
// bytes, and webhooks go through create, list, get and delete.
func TestEventsAndWebhooksAgainstSim(t *testing.T) {
	sim, srv := newSim(t)
	c, _ := newClient(t, srv.URL, nil)
	ctx := t.Context()
	before := time.Now().Add(-time.Second)

	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(receiver.Close)
	hook, err := c.CreateWebhook(ctx, receiver.URL+"/webhooks/seam", []string{"acs_credential.issued"})
	require.NoError(t, err)
	require.NotEmpty(t, hook.WebhookID)
	require.Regexp(t, `^whsec_[A-Za-z0-9+/]+=*$`, hook.Secret)
	require.Equal(t, []string{"acs_credential.issued"}, hook.EventTypes)
	got, err := c.GetWebhook(ctx, hook.WebhookID)
	require.NoError(t, err)
	require.Equal(t, hook, got)
	list, err := c.ListWebhooks(ctx)
	require.NoError(t, err)
	require.Equal(t, []seam.Webhook{hook}, list)

	attempt, err := c.EncodeCredential(ctx, seam.EncodeRequest{AcsEncoderID: encoderID, AcsCredentialID: credID})
	require.NoError(t, err)
	awaitSettled(t, c, attempt.ActionAttemptID)
	require.Eventually(t, func() bool { return sim.Delivered() == 1 }, 10*time.Second, 5*time.Millisecond)
	events, err := c.ListEvents(ctx, seam.ListEventsRequest{Since: &before, EventTypes: []string{"acs_credential.issued"}})
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, sim.Events(), events, "the webhook body's bytes")
	none, err := c.ListEvents(ctx, seam.ListEventsRequest{Between: &[2]time.Time{before, before.Add(time.Millisecond)}})
	require.NoError(t, err)
	require.Empty(t, none)

	require.NoError(t, c.DeleteWebhook(ctx, hook.WebhookID))
	_, err = c.GetWebhook(ctx, hook.WebhookID)
	var apiErr *seam.APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusNotFound, apiErr.Status)
	require.Equal(t, "webhook_not_found", apiErr.Type)
	err = c.DeleteWebhook(ctx, hook.WebhookID)
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "webhook_not_found", apiErr.Type)
	require.Equal(t, 2, sim.Calls(seamsim.PathDeleteWebhook))
}
