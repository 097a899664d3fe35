package seamsim_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
)

// createWebhook registers url for eventTypes (nil: the default).
func (e *env) createWebhook(t *testing.T, url string, eventTypes []string) seam.Webhook {
	t.Helper()
	body := map[string]any{"url": url}
	if eventTypes != nil {
		body["event_types"] = eventTypes
	}
	a := e.call(t, seamsim.PathCreateWebhook, body)
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	var w seam.Webhook
	require.NoError(t, json.Unmarshal(a.body["webhook"], &w))
	return w
}

func (e *env) webhooks(t *testing.T) []seam.Webhook {
	t.Helper()
	a := e.call(t, seamsim.PathListWebhooks, map[string]any{})
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	var ws []seam.Webhook
	require.NoError(t, json.Unmarshal(a.body["webhooks"], &ws))
	return ws
}

func (e *env) deleteWebhook(t *testing.T, id string) {
	t.Helper()
	a := e.call(t, seamsim.PathDeleteWebhook, map[string]string{"webhook_id": id})
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	require.JSONEq(t, `{"ok":true}`, string(a.raw))
}

func TestWebhooksCreateListGetDelete(t *testing.T) {
	e := newEnv(t, nil)
	list := e.webhooks(t)
	require.Len(t, list, 1, "Options.WebhookURL is the first webhook")
	first := list[0]
	require.NotEmpty(t, first.WebhookID)
	require.Equal(t, seam.Webhook{WebhookID: first.WebhookID, URL: e.rc.url(), EventTypes: []string{"*"}, Secret: e.secret}, first)

	made := e.createWebhook(t, "https://cardwire.example.com/webhooks/seam", []string{"acs_credential.issued"})
	require.NotEmpty(t, made.WebhookID)
	require.NotEqual(t, first.WebhookID, made.WebhookID)
	require.Equal(t, []string{"acs_credential.issued"}, made.EventTypes)
	require.Regexp(t, `^whsec_[A-Za-z0-9+/]+=*$`, made.Secret)
	_, err := svix.NewWebhook(made.Secret)
	require.NoError(t, err, "a secret the svix library accepts")
	every := e.createWebhook(t, "https://cardwire.example.com/webhooks/seam", nil)
	require.Equal(t, []string{"*"}, every.EventTypes, "the default")
	require.NotEqual(t, made.Secret, every.Secret, "a fresh secret each")

	a := e.call(t, seamsim.PathGetWebhook, map[string]string{"webhook_id": made.WebhookID})
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	var got seam.Webhook
	require.NoError(t, json.Unmarshal(a.body["webhook"], &got))
	require.Equal(t, made, got, "with its secret")
	require.Equal(t, []seam.Webhook{first, made, every}, e.webhooks(t), "in creation order, with secrets, as the webhook schema")

	e.deleteWebhook(t, made.WebhookID)
	require.Equal(t, []seam.Webhook{first, every}, e.webhooks(t))
	for _, p := range []string{seamsim.PathGetWebhook, seamsim.PathDeleteWebhook} {
		a := e.call(t, p, map[string]string{"webhook_id": made.WebhookID})
		require.Equal(t, http.StatusNotFound, a.status, "%s: %s", p, a.raw)
		require.Equal(t, "webhook_not_found", a.errType(t))
	}
}

func TestWebhooksBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	testCases := []struct {
		Name       string
		Path       string
		Body       any
		WantStatus int
		WantType   string
	}{
		{"create without url", seamsim.PathCreateWebhook, map[string]any{"event_types": []string{"*"}}, 400, "invalid_input"},
		{"create with a relative url", seamsim.PathCreateWebhook, map[string]any{"url": "/webhooks/seam"}, 400, "invalid_input"},
		{"create with an ftp url", seamsim.PathCreateWebhook, map[string]any{"url": "ftp://x/y"}, 400, "invalid_input"},
		{"get without id", seamsim.PathGetWebhook, map[string]any{}, 400, "invalid_input"},
		{"delete without id", seamsim.PathDeleteWebhook, map[string]any{}, 400, "invalid_input"},
		{"get unknown", seamsim.PathGetWebhook, map[string]any{"webhook_id": "f0000000-0000-4000-8000-00000000000f"}, 404, "webhook_not_found"},
		{"delete unknown", seamsim.PathDeleteWebhook, map[string]any{"webhook_id": "f0000000-0000-4000-8000-00000000000f"}, 404, "webhook_not_found"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			a := e.call(t, c.Path, c.Body)
			require.Equal(t, c.WantStatus, a.status, "%s", a.raw)
			require.Equal(t, c.WantType, a.errType(t))
		})
	}
	require.Len(t, e.webhooks(t), 1)
}

// Every webhook gets every event it subscribes to: a message of its own
// (its own svix-id), signed with its own secret, with the same body.
func TestEveryWebhookGetsEachEvent(t *testing.T) {
	e := newEnv(t, nil)
	other := newReceiver(t) // trusts only the new webhook's secret
	made := e.createWebhook(t, other.url(), nil)
	other.trust(made.Secret)

	e.encodeCredential(t, credID)
	a, b := e.rc.next(t), other.next(t)
	require.Equal(t, e.secret, a.secret)
	require.Equal(t, made.Secret, b.secret)
	require.NotEqual(t, a.id, b.id, "a message per webhook")
	require.Equal(t, string(a.body), string(b.body), "one event")
	require.Equal(t, []json.RawMessage{a.body}, e.sim.Events())
	require.Eventually(t, func() bool { return e.sim.Delivered() == 2 }, wait, tick)

	// Without the first webhook, the next event goes to the other only.
	e.deleteWebhook(t, e.webhooks(t)[0].WebhookID)
	e.encodeCredential(t, credID)
	require.Equal(t, "acs_credential.reissued", other.next(t).event["event_type"])
	require.Eventually(t, func() bool { return e.sim.Delivered() == 3 }, wait, tick)
	e.rc.none(t)
	require.Len(t, e.sim.Events(), 2, "both logged")
}

// A secret rotation: a second webhook to the same URL. The receiver gets
// each event twice, once signed with each secret, until the old webhook is
// deleted.
func TestSecretRotationTwoWebhooksOneURL(t *testing.T) {
	e := newEnv(t, nil)
	old := e.webhooks(t)[0]
	rotated := e.createWebhook(t, e.rc.url(), nil)
	e.rc.trust(rotated.Secret)

	e.encodeCredential(t, credID)
	a, b := e.rc.next(t), e.rc.next(t)
	require.ElementsMatch(t, []string{e.secret, rotated.Secret}, []string{a.secret, b.secret}, "each verifies with exactly one secret")
	require.NotEqual(t, a.id, b.id)
	require.Equal(t, string(a.body), string(b.body))
	require.Equal(t, a.event["event_id"], b.event["event_id"])

	e.deleteWebhook(t, old.WebhookID)
	e.encodeCredential(t, credID)
	d := e.rc.next(t)
	require.Equal(t, rotated.Secret, d.secret)
	require.Eventually(t, func() bool { return e.sim.Delivered() == 3 }, wait, tick)
	e.rc.none(t)
}

func TestWebhookEventTypes(t *testing.T) {
	e := newEnv(t, nil)
	e.sim.AddEncoder(encoderID)
	e.sim.AddCredential(credID)
	other := newReceiver(t)
	made := e.createWebhook(t, other.url(), []string{"acs_credential.reissued"})
	other.trust(made.Secret)

	e.encodeCredential(t, credID) // issued: the first webhook only
	require.Equal(t, "acs_credential.issued", e.rc.next(t).event["event_type"])
	e.encodeCredential(t, credID) // reissued: both
	require.Equal(t, "acs_credential.reissued", e.rc.next(t).event["event_type"])
	require.Equal(t, "acs_credential.reissued", other.next(t).event["event_type"], "the issued event never came")
	require.Eventually(t, func() bool { return e.sim.Delivered() == 3 }, wait, tick)
	other.none(t)
}

// DropNextWebhook and DuplicateNextWebhook apply to every webhook.
func TestKnobsApplyToEveryWebhook(t *testing.T) {
	e := newEnv(t, nil)
	other := newReceiver(t)
	other.trust(e.createWebhook(t, other.url(), nil).Secret)

	e.sim.DropNextWebhook()
	e.settled(t, e.encodeCredential(t, credID).ActionAttemptID)
	e.sim.DuplicateNextWebhook()
	e.encodeCredential(t, credID)
	ids := map[string]bool{}
	for _, rc := range []*receiver{e.rc, e.rc, other, other} {
		d := rc.next(t)
		require.Equal(t, "acs_credential.reissued", d.event["event_type"], "the dropped issued event never came")
		ids[d.id] = true
	}
	require.Len(t, ids, 4, "two messages per webhook")
	require.Eventually(t, func() bool { return e.sim.Delivered() == 4 }, wait, tick)
	require.Len(t, e.sim.Events(), 2)
}

// A deleted webhook's message is not retried.
func TestDeletedWebhookStopsRedelivery(t *testing.T) {
	e := newEnv(t, func(o *seamsim.Options) { o.RetryDelays = []time.Duration{time.Millisecond, time.Millisecond} })
	other := newReceiver(t)
	made := e.createWebhook(t, other.url(), nil)
	other.trust(made.Secret)
	deleted := make(chan struct{})
	other.setAnswer(func(_ int, w http.ResponseWriter, _ *http.Request) {
		<-deleted
		w.WriteHeader(http.StatusServiceUnavailable)
	})

	e.encodeCredential(t, credID)
	e.rc.next(t)
	other.next(t) // the first attempt, answered once the webhook is gone
	e.deleteWebhook(t, made.WebhookID)
	close(deleted)

	// The retry would come 1ms after the 503; the next encode's webhook
	// comes at least EncodeDelay (20ms) after it.
	e.encodeCredential(t, credID)
	require.Equal(t, "acs_credential.reissued", e.rc.next(t).event["event_type"])
	require.Eventually(t, func() bool { return e.sim.Delivered() == 2 }, wait, tick)
	other.none(t)
}
