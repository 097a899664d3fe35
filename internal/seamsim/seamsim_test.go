package seamsim_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
)

var cardNumber = regexp.MustCompile(`^[0-9]{8}$`)

func TestEncodeIssuesThenReissues(t *testing.T) {
	e := newEnv(t, nil)
	e.sim.AddEncoder(encoderID)
	e.sim.AddCredential(credID)

	var cards []string
	for i, wantType := range []string{"acs_credential.issued", "acs_credential.reissued"} {
		start := e.encodeCredential(t, credID)

		d := e.rc.next(t)
		require.True(t, strings.HasPrefix(d.id, "msg_"), d.id)
		require.Equal(t, wantType, d.event["event_type"])
		require.Equal(t, credID, d.event["acs_credential_id"])
		require.Equal(t, workspace, d.event["workspace_id"])
		for _, k := range []string{"event_id", "created_at", "occurred_at", "acs_system_id", "connected_account_id"} {
			require.NotEmpty(t, d.event[k], k)
		}
		require.NotContains(t, d.event, "action_attempt_id", "Seam's events carry no attempt id")

		// The attempt resolved before its webhook was sent.
		at := e.attempt(t, start.ActionAttemptID)
		require.Equal(t, seam.AttemptSuccess, at.Status)
		require.Nil(t, at.Error)
		c, err := at.Credential()
		require.NoError(t, err)
		require.Equal(t, credID, c.AcsCredentialID)
		require.Equal(t, workspace, c.WorkspaceID)
		require.True(t, c.IsIssued)
		require.NotNil(t, c.IssuedAt)
		require.NotNil(t, c.CardNumber)
		require.Regexp(t, cardNumber, *c.CardNumber)
		cards = append(cards, *c.CardNumber)
		require.Eventually(t, func() bool { return e.sim.Delivered() == i+1 }, wait, tick)
	}

	got := e.call(t, seamsim.PathGetCredential, map[string]string{"acs_credential_id": credID})
	var c seam.Credential
	require.NoError(t, json.Unmarshal(got.body["acs_credential"], &c))
	require.True(t, c.IsIssued)
	require.Equal(t, cards[1], *c.CardNumber, "the credential shows the latest card")
	require.Equal(t, 2, e.sim.Calls(seamsim.PathEncodeCredential))
	require.Equal(t, 2, e.sim.CallsWith(seamsim.PathEncodeCredential, seamsim.AuthAPIKey))
}

func TestEncodeAccessMethod(t *testing.T) {
	e := newEnv(t, nil)
	e.sim.AddEncoder(encoderID)
	e.sim.AddAccessMethod(methodID)

	testCases := []struct {
		Name     string
		Path     string
		WantType string
	}{
		{"access_methods/encode issues", seamsim.PathEncodeAccess, "access_method.issued"},
		{"encode_credential with access_method_id reissues", seamsim.PathEncodeCredential, "access_method.reissued"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			a := e.call(t, c.Path, map[string]string{"acs_encoder_id": encoderID, "access_method_id": methodID})
			require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
			var at seam.ActionAttempt
			require.NoError(t, json.Unmarshal(a.body["action_attempt"], &at))

			d := e.rc.next(t)
			require.Equal(t, c.WantType, d.event["event_type"])
			require.Equal(t, methodID, d.event["access_method_id"])
			require.Len(t, d.event["access_grant_ids"], 1)
			require.NotContains(t, d.event, "acs_credential_id")

			cred, err := e.attempt(t, at.ActionAttemptID).Credential()
			require.NoError(t, err, "an access-method encode results in an acs_credential")
			require.True(t, cred.IsIssued)
			require.Regexp(t, cardNumber, *cred.CardNumber)
		})
	}
}

func TestNextEncodeWillFail(t *testing.T) {
	testCases := []struct {
		Name      string
		ErrorCode string
		WantType  string
	}{
		{"default", "", "no_credential_on_encoder"},
		{"encoding interrupted", "encoding_interrupted", "encoding_interrupted"},
		{"uncategorized", "uncategorized_error", "uncategorized_error"},
		{"expired", "action_attempt_expired", "action_attempt_expired"},
		{"unknown type kept verbatim", "laser_misaligned", "laser_misaligned"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			e := newEnv(t, nil)
			body := map[string]string{"acs_encoder_id": encoderID}
			if c.ErrorCode != "" {
				body["error_code"] = c.ErrorCode
			}
			a := e.call(t, seamsim.PathSimulateWillFail, body)
			require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
			require.JSONEq(t, `{"ok":true}`, string(a.raw))

			at := e.settled(t, e.encodeCredential(t, credID).ActionAttemptID)
			require.Equal(t, seam.AttemptError, at.Status)
			require.NotNil(t, at.Error)
			require.Equal(t, c.WantType, at.Error.Type)
			require.NotEmpty(t, at.Error.Message)
			require.JSONEq(t, "null", string(at.Result))
			_, err := at.Credential()
			require.Error(t, err)
			// A failed encode sends no webhook: it was never scheduled.
			require.Zero(t, e.sim.Delivered())
			e.rc.none(t)

			// The failure was for one encode only.
			e.encodeCredential(t, credID)
			require.Equal(t, "acs_credential.issued", e.rc.next(t).event["event_type"])
		})
	}
}

func TestNextEncodeWillSucceedUndoesFail(t *testing.T) {
	e := newEnv(t, nil)
	for _, p := range []string{seamsim.PathSimulateWillFail, seamsim.PathSimulateWillSucceed} {
		a := e.call(t, p, map[string]string{"acs_encoder_id": encoderID})
		require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	}
	at := e.settled(t, e.encodeCredential(t, credID).ActionAttemptID)
	require.Equal(t, seam.AttemptSuccess, at.Status)
	e.rc.next(t)
}

func TestDropNextWebhook(t *testing.T) {
	e := newEnv(t, nil)
	e.sim.DropNextWebhook()
	dropped := e.settled(t, e.encodeCredential(t, credID).ActionAttemptID)
	require.Equal(t, seam.AttemptSuccess, dropped.Status)

	// The next encode's webhook is the first one to arrive.
	const other = "c0000000-0000-4000-8000-000000000002"
	e.encodeCredential(t, other)
	require.Equal(t, other, e.rc.next(t).event["acs_credential_id"])
	require.Eventually(t, func() bool { return e.sim.Delivered() == 1 }, wait, tick)
	e.rc.none(t)
}

func TestDuplicateNextWebhook(t *testing.T) {
	e := newEnv(t, nil)
	e.sim.DuplicateNextWebhook()
	e.encodeCredential(t, credID)
	first, second := e.rc.next(t), e.rc.next(t)
	require.NotEqual(t, first.id, second.id, "two Svix messages")
	require.Equal(t, first.event["event_id"], second.event["event_id"], "one Seam event")
	require.Equal(t, first.body, second.body)
	require.Eventually(t, func() bool { return e.sim.Delivered() == 2 }, wait, tick)
}

func TestRedeliveryKeepsSvixID(t *testing.T) {
	e := newEnv(t, nil)
	e.rc.setAnswer(func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	e.encodeCredential(t, credID)
	first, retry := e.rc.next(t), e.rc.next(t)
	require.Equal(t, first.id, retry.id)
	require.Equal(t, first.body, retry.body)
	require.Eventually(t, func() bool { return e.sim.Delivered() == 1 }, wait, tick)
}

func TestRedeliveryStopsWhenRetriesRunOut(t *testing.T) {
	e := newEnv(t, func(o *seamsim.Options) { o.RetryDelays = []time.Duration{time.Millisecond} })
	e.rc.setAnswer(func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	e.encodeCredential(t, credID)
	first, retry := e.rc.next(t), e.rc.next(t)
	require.Equal(t, first.id, retry.id)

	// The given-up message is not sent a third time: the next webhook to
	// arrive is a new encode's.
	const other = "c0000000-0000-4000-8000-000000000002"
	e.encodeCredential(t, other)
	d := e.rc.next(t)
	require.Equal(t, other, d.event["acs_credential_id"])
	require.Eventually(t, func() bool { return e.sim.Delivered() == 1 }, wait, tick)
}

func TestDelayNextWebhook(t *testing.T) {
	e := newEnv(t, nil)
	const delay = 100 * time.Millisecond
	e.sim.DelayNextWebhook(delay)
	start := time.Now()
	at := e.encodeCredential(t, credID)
	d := e.rc.next(t)
	// Timers never fire early, so this bound holds without sleeping.
	require.GreaterOrEqual(t, d.at.Sub(start), 20*time.Millisecond+delay)
	require.Equal(t, seam.AttemptSuccess, e.attempt(t, at.ActionAttemptID).Status)
}

func TestWebhookBeforeResponse(t *testing.T) {
	e := newEnv(t, nil)
	e.sim.WebhookBeforeResponse()
	at := e.encodeCredential(t, credID) // the answer shows the attempt pending
	select {
	case d := <-e.rc.got:
		require.Equal(t, "acs_credential.issued", d.event["event_type"])
	default:
		t.Fatal("the webhook had not arrived when the encode answered")
	}
	require.Equal(t, seam.AttemptSuccess, e.attempt(t, at.ActionAttemptID).Status)
}

func TestHoldNextEncode(t *testing.T) {
	e := newEnv(t, nil)
	e.sim.HoldNextEncode()
	held := e.encodeCredential(t, credID)

	const other = "c0000000-0000-4000-8000-000000000002"
	e.encodeCredential(t, other)
	require.Equal(t, other, e.rc.next(t).event["acs_credential_id"])
	require.Equal(t, seam.AttemptPending, e.attempt(t, held.ActionAttemptID).Status)
	e.rc.none(t)
}

func TestListActionAttempts(t *testing.T) {
	e := newEnv(t, nil)
	e.sim.HoldNextEncode()
	held := e.encodeCredential(t, credID)
	done := e.settled(t, e.encodeCredential(t, "c0000000-0000-4000-8000-000000000002").ActionAttemptID)

	a := e.call(t, seamsim.PathListAttempts, map[string]any{"action_attempt_ids": []string{done.ActionAttemptID, "unknown", held.ActionAttemptID}})
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	var list []seam.ActionAttempt
	require.NoError(t, json.Unmarshal(a.body["action_attempts"], &list))
	require.Len(t, list, 2)
	require.Equal(t, done.ActionAttemptID, list[0].ActionAttemptID)
	require.Equal(t, seam.AttemptSuccess, list[0].Status)
	require.Equal(t, seam.AttemptPending, list[1].Status)
	require.JSONEq(t, `{"has_next_page":false,"next_page_cursor":null,"next_page_url":null}`, string(a.body["pagination"]))
}

func TestListEncoders(t *testing.T) {
	e := newEnv(t, func(o *seamsim.Options) { o.Strict = true })
	e.sim.AddEncoder(encoderID)
	a := e.call(t, seamsim.PathListEncoders, map[string]any{"acs_encoder_ids": []string{encoderID, "unknown"}})
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	var encs []seam.Encoder
	require.NoError(t, json.Unmarshal(a.body["acs_encoders"], &encs))
	require.Len(t, encs, 1)
	require.Equal(t, encoderID, encs[0].AcsEncoderID)
	require.Equal(t, workspace, encs[0].WorkspaceID)
	require.NotEmpty(t, encs[0].AcsSystemID)

	bySystem := e.call(t, seamsim.PathListEncoders, map[string]any{"acs_system_id": encs[0].AcsSystemID})
	require.JSONEq(t, string(a.body["acs_encoders"]), string(bySystem.body["acs_encoders"]))
	require.NotNil(t, bySystem.body["pagination"])
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	testCases := []struct {
		Name       string
		Path       string
		Body       any
		WantStatus int
		WantType   string
	}{
		{"encode without encoder", seamsim.PathEncodeCredential, map[string]string{"acs_credential_id": credID}, 400, "invalid_input"},
		{"encode with both ids", seamsim.PathEncodeCredential, map[string]string{"acs_encoder_id": encoderID, "acs_credential_id": credID, "access_method_id": methodID}, 400, "invalid_input"},
		{"encode with neither id", seamsim.PathEncodeCredential, map[string]string{"acs_encoder_id": encoderID}, 400, "invalid_input"},
		{"access method encode without method", seamsim.PathEncodeAccess, map[string]string{"acs_encoder_id": encoderID}, 400, "invalid_input"},
		{"wrong JSON type", seamsim.PathEncodeCredential, map[string]any{"acs_encoder_id": 7}, 400, "invalid_input"},
		{"not an object", seamsim.PathGetActionAttempt, []string{"x"}, 400, "invalid_input"},
		{"get attempt without id", seamsim.PathGetActionAttempt, map[string]string{}, 400, "invalid_input"},
		{"unknown attempt", seamsim.PathGetActionAttempt, map[string]string{"action_attempt_id": "nope"}, 404, "action_attempt_not_found"},
		{"list encoders without selector", seamsim.PathListEncoders, map[string]string{}, 400, "invalid_input"},
		{"list encoders with two selectors", seamsim.PathListEncoders, map[string]any{"acs_system_id": "s", "acs_encoder_ids": []string{encoderID}}, 400, "invalid_input"},
		{"simulate without encoder", seamsim.PathSimulateWillFail, map[string]string{}, 400, "invalid_input"},
		{"unknown route", "/devices/list", map[string]string{}, 404, "not_found"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			a := e.call(t, c.Path, c.Body)
			require.Equal(t, c.WantStatus, a.status, "%s", a.raw)
			require.Equal(t, c.WantType, a.errType(t))
		})
	}

	t.Run("GET is not allowed", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, e.api.URL+seamsim.PathGetActionAttempt, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	})
}

func TestStrictUnknownIDs(t *testing.T) {
	e := newEnv(t, func(o *seamsim.Options) { o.Strict = true })
	e.sim.AddEncoder(encoderID)
	e.sim.AddCredential(credID)
	e.sim.AddAccessMethod(methodID)
	const unknown = "f0000000-0000-4000-8000-00000000000f"
	testCases := []struct {
		Name     string
		Path     string
		Body     map[string]string
		WantType string
	}{
		{"encoder", seamsim.PathEncodeCredential, map[string]string{"acs_encoder_id": unknown, "acs_credential_id": credID}, "acs_encoder_not_found"},
		{"credential", seamsim.PathEncodeCredential, map[string]string{"acs_encoder_id": encoderID, "acs_credential_id": unknown}, "acs_credential_not_found"},
		{"access method", seamsim.PathEncodeAccess, map[string]string{"acs_encoder_id": encoderID, "access_method_id": unknown}, "access_method_not_found"},
		{"get credential", seamsim.PathGetCredential, map[string]string{"acs_credential_id": unknown}, "acs_credential_not_found"},
		{"simulate on unknown encoder", seamsim.PathSimulateWillFail, map[string]string{"acs_encoder_id": unknown}, "acs_encoder_not_found"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			a := e.call(t, c.Path, c.Body)
			require.Equal(t, http.StatusNotFound, a.status, "%s", a.raw)
			require.Equal(t, c.WantType, a.errType(t))
		})
	}
	require.Zero(t, e.sim.Calls(seamsim.PathGetActionAttempt))

	t.Run("known ids work", func(t *testing.T) {
		e.encodeCredential(t, credID)
		e.encode(t, map[string]string{"acs_encoder_id": encoderID, "access_method_id": methodID})
		e.rc.next(t)
		e.rc.next(t)
	})
}

func TestLenientCreatesUnknownIDs(t *testing.T) {
	e := newEnv(t, nil)
	e.encodeCredential(t, "card-1") // neither the encoder nor the credential exists
	require.Equal(t, "card-1", e.rc.next(t).event["acs_credential_id"])
	a := e.call(t, seamsim.PathGetCredential, map[string]string{"acs_credential_id": "card-2"})
	require.Equal(t, http.StatusOK, a.status)
	var c seam.Credential
	require.NoError(t, json.Unmarshal(a.body["acs_credential"], &c))
	require.False(t, c.IsIssued)
	require.Nil(t, c.CardNumber)
}

func TestUnauthorized(t *testing.T) {
	e := newEnv(t, nil)
	for name, auth := range map[string]string{"no header": "", "wrong key": "Bearer seam_test_other", "no scheme": apiKey} {
		t.Run(name, func(t *testing.T) {
			a := e.callWith(t, auth, seamsim.PathGetActionAttempt, map[string]string{"action_attempt_id": "x"})
			require.Equal(t, http.StatusUnauthorized, a.status)
			require.Equal(t, "unauthorized", a.errType(t))
		})
	}
	require.Equal(t, 3, e.sim.Calls(seamsim.PathGetActionAttempt), "failed requests count")
	require.Zero(t, e.sim.CallsWith(seamsim.PathGetActionAttempt, seamsim.AuthAPIKey), "refused credentials reached no workspace")
}

func TestFailNextAndSetDown(t *testing.T) {
	e := newEnv(t, nil)
	get := map[string]string{"acs_credential_id": credID}

	e.sim.FailNext(seamsim.PathGetCredential, http.StatusTooManyRequests, 1500*time.Millisecond)
	e.sim.FailNext(seamsim.PathGetCredential, http.StatusInternalServerError, 0)
	a := e.call(t, seamsim.PathGetCredential, get)
	require.Equal(t, http.StatusTooManyRequests, a.status)
	require.Equal(t, "2", a.header.Get("Retry-After"), "whole seconds, rounded up")
	require.NotEmpty(t, a.errType(t))
	a = e.call(t, seamsim.PathGetCredential, get)
	require.Equal(t, http.StatusInternalServerError, a.status)
	require.Empty(t, a.header.Get("Retry-After"))
	require.Equal(t, http.StatusOK, e.call(t, seamsim.PathGetCredential, get).status, "only the next requests fail")

	e.sim.SetDown(true)
	for _, p := range []string{seamsim.PathGetCredential, seamsim.PathEncodeCredential, "/anything"} {
		a := e.call(t, p, get)
		require.Equal(t, http.StatusServiceUnavailable, a.status, p)
		require.Equal(t, "service_unavailable", a.errType(t))
	}
	e.sim.SetDown(false)
	require.Equal(t, http.StatusOK, e.call(t, seamsim.PathGetCredential, get).status)
	require.Equal(t, 5, e.sim.Calls(seamsim.PathGetCredential))
}

func TestConcurrentEncodes(t *testing.T) {
	e := newEnv(t, nil)
	const n = 20
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a, err := e.do("Bearer "+apiKey, seamsim.PathEncodeCredential, map[string]string{
				"acs_encoder_id": encoderID, "acs_credential_id": fmt.Sprintf("card-%d", i),
			})
			if err != nil || a.status != http.StatusOK {
				t.Errorf("encode: %v %s", err, a.raw)
				return
			}
			ids <- "ok"
		})
	}
	wg.Wait()
	require.Len(t, ids, n)
	seen := map[string]bool{}
	for range n {
		seen[e.rc.next(t).event["acs_credential_id"].(string)] = true
	}
	require.Len(t, seen, n)
	require.Eventually(t, func() bool { return e.sim.Delivered() == n }, wait, tick)
}

func TestCloseAbortsDeliveryInFlight(t *testing.T) {
	e := newEnv(t, nil)
	e.rc.setAnswer(func(_ int, _ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers: only the Sim's Close ends it
	})
	e.encodeCredential(t, credID)
	e.rc.next(t) // the POST is in flight
	e.sim.Close()
	require.Zero(t, e.sim.Delivered())
}

func TestCloseStopsPendingEncodes(t *testing.T) {
	e := newEnv(t, func(o *seamsim.Options) { o.EncodeDelay = time.Hour })
	at := e.encodeCredential(t, credID)
	e.sim.Close() // returns although an encode is scheduled an hour out
	require.Equal(t, seam.AttemptPending, e.attempt(t, at.ActionAttemptID).Status)
	e.sim.Close()
}

func TestValidate(t *testing.T) {
	secret := newSecret(t)
	testCases := []struct {
		Name    string
		Options seamsim.Options
		WantErr string
	}{
		{"minimal", seamsim.Options{APIKey: "k"}, ""},
		{"with webhooks", seamsim.Options{APIKey: "k", WebhookURL: "http://127.0.0.1:8080/webhooks/seam", WebhookSecret: secret}, ""},
		{"no key", seamsim.Options{}, "APIKey"},
		{"negative delay", seamsim.Options{APIKey: "k", EncodeDelay: -time.Second}, "EncodeDelay"},
		{"negative retry", seamsim.Options{APIKey: "k", RetryDelays: []time.Duration{time.Second, -1}}, "RetryDelays[1]"},
		{"url without secret", seamsim.Options{APIKey: "k", WebhookURL: "http://x/"}, "WebhookSecret"},
		{"relative url", seamsim.Options{APIKey: "k", WebhookURL: "/webhooks", WebhookSecret: secret}, "WebhookURL"},
		{"bad secret", seamsim.Options{APIKey: "k", WebhookURL: "http://x/", WebhookSecret: "whsec_!!"}, "WebhookSecret"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			err := c.Options.Validate()
			if c.WantErr == "" {
				require.NoError(t, err)
				s, err := seamsim.New(c.Options)
				require.NoError(t, err)
				s.Close()
				return
			}
			require.ErrorContains(t, err, c.WantErr)
			_, err = seamsim.New(c.Options)
			require.Error(t, err)
		})
	}
}
