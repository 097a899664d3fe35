package seamsim_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
)

const (
	apiKey    = "seam_test_key"
	workspace = "00000000-0000-4000-8000-00000000000a"
	encoderID = "e0000000-0000-4000-8000-000000000001"
	credID    = "c0000000-0000-4000-8000-000000000001"
	methodID  = "a0000000-0000-4000-8000-000000000001"
	// wait bounds every wait on an event; it is a failure bound, not a pace.
	wait = 10 * time.Second
	tick = 5 * time.Millisecond
)

func newSecret(t testing.TB) string {
	t.Helper()
	key := make([]byte, 24)
	_, err := rand.Read(key)
	require.NoError(t, err)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// delivery is one webhook POST as the receiver saw it.
type delivery struct {
	id    string
	body  []byte
	event map[string]any
	at    time.Time
	// secret is the one trusted secret the signature verifies with.
	secret string
}

// receiver is an httptest webhook endpoint that verifies every POST with
// the svix library against the secrets it trusts and hands it to the test
// on a channel before answering.
type receiver struct {
	srv *httptest.Server
	got chan delivery

	mu      sync.Mutex
	secrets []string
	posts   int
	answer  func(n int, w http.ResponseWriter, r *http.Request) // n counts POSTs from 1; nil answers 204
}

// newReceiver trusts secrets; trust adds more (the secret of a webhook made
// with /webhooks/create is known only once the receiver's URL is).
func newReceiver(t *testing.T, secrets ...string) *receiver {
	t.Helper()
	rc := &receiver{got: make(chan delivery, 64), secrets: secrets}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		trusted := slices.Clone(rc.secrets)
		rc.mu.Unlock()
		var verified []string
		for _, secret := range trusted {
			wh, err := svix.NewWebhook(secret)
			if err != nil {
				t.Errorf("trusted secret: %v", err)
				continue
			}
			if wh.Verify(body, r.Header) == nil {
				verified = append(verified, secret)
			}
		}
		if len(verified) != 1 {
			t.Errorf("webhook %s verifies with %d of the %d trusted secrets, want exactly 1", r.Header.Get("svix-id"), len(verified), len(trusted))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("webhook Content-Type %q", ct)
		}
		var ev map[string]any
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("webhook body is not JSON: %v", err)
		}
		rc.mu.Lock()
		rc.posts++
		n, answer := rc.posts, rc.answer
		rc.mu.Unlock()
		rc.got <- delivery{id: r.Header.Get("svix-id"), body: body, event: ev, at: time.Now(), secret: verified[0]}
		if answer != nil {
			answer(n, w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) trust(secret string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secrets = append(rc.secrets, secret)
}

// url is where a webhook to this receiver points.
func (rc *receiver) url() string { return rc.srv.URL + "/webhooks/seam" }

func (rc *receiver) setAnswer(f func(n int, w http.ResponseWriter, r *http.Request)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.answer = f
}

// next waits for the next delivery.
func (rc *receiver) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-rc.got:
		return d
	case <-time.After(wait):
		t.Fatal("no webhook arrived")
		return delivery{}
	}
}

// none checks that nothing was delivered so far.
func (rc *receiver) none(t *testing.T) {
	t.Helper()
	select {
	case d := <-rc.got:
		t.Fatalf("unexpected webhook %s: %s", d.id, d.body)
	default:
	}
}

// env is a Sim behind an httptest server, sending webhooks to a receiver.
type env struct {
	sim    *seamsim.Sim
	api    *httptest.Server
	rc     *receiver
	secret string // the first webhook's (Options.WebhookSecret)
}

// newEnv starts a Sim with test options; configure may change them.
func newEnv(t *testing.T, configure func(*seamsim.Options)) *env {
	t.Helper()
	secret := newSecret(t)
	e := &env{rc: newReceiver(t, secret), secret: secret}
	o := seamsim.Options{
		APIKey:        apiKey,
		WorkspaceID:   workspace,
		WebhookURL:    e.rc.url(),
		WebhookSecret: secret,
		EncodeDelay:   20 * time.Millisecond,
		RetryDelays:   []time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
		Log:           zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
	if configure != nil {
		configure(&o)
	}
	sim, err := seamsim.New(o)
	require.NoError(t, err)
	e.sim = sim
	e.api = httptest.NewServer(sim.Handler())
	// Cleanups run last-in first-out: the Sim stops before the servers close.
	t.Cleanup(e.api.Close)
	t.Cleanup(sim.Close)
	return e
}

// newAPI serves sim; the Sim stops before the server closes.
func newAPI(t *testing.T, sim *seamsim.Sim) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close)
	return srv
}

// answer is one API answer.
type answer struct {
	status int
	header http.Header
	body   map[string]json.RawMessage
	raw    []byte
}

// errType is the error envelope's type ("" when there is none).
func (a answer) errType(t *testing.T) string {
	t.Helper()
	var e struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
	if a.body["error"] == nil {
		return ""
	}
	require.NoError(t, json.Unmarshal(a.body["error"], &e))
	require.NotEmpty(t, e.Message)
	return e.Type
}

func (e *env) call(t *testing.T, path string, body any) answer {
	t.Helper()
	return e.callWith(t, "Bearer "+apiKey, path, body)
}

func (e *env) callWith(t *testing.T, auth, path string, body any) answer {
	t.Helper()
	a, err := e.do(auth, path, body)
	require.NoError(t, err)
	require.Equal(t, "application/json", a.header.Get("Content-Type"))
	require.NotEmpty(t, a.header.Get("seam-request-id"))
	require.JSONEq(t, map[bool]string{true: "true", false: "false"}[a.status == http.StatusOK], string(a.body["ok"]))
	return a
}

// do makes one API call; it is safe off the test goroutine (no require).
func (e *env) do(auth, path string, body any) (answer, error) {
	h := http.Header{}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	return post(e.api.URL, h, path, body)
}

// post makes one API call to base with the headers h.
func post(base string, h http.Header, path string, body any) (answer, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return answer{}, err
	}
	req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(b))
	if err != nil {
		return answer{}, err
	}
	req.Header = h.Clone()
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, header: resp.Header, raw: raw}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		return a, fmt.Errorf("body %s: %w", raw, err)
	}
	return a, nil
}

func (e *env) encode(t *testing.T, body map[string]string) seam.ActionAttempt {
	t.Helper()
	path := seamsim.PathEncodeCredential
	if _, ok := body["acs_credential_id"]; !ok {
		path = seamsim.PathEncodeAccess
	}
	a := e.call(t, path, body)
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	var at seam.ActionAttempt
	require.NoError(t, json.Unmarshal(a.body["action_attempt"], &at))
	require.Equal(t, seam.AttemptPending, at.Status)
	require.Equal(t, seam.ActionTypeEncodeCredential, at.ActionType)
	require.NotEmpty(t, at.ActionAttemptID)
	require.Nil(t, at.Error)
	require.JSONEq(t, "null", string(at.Result))
	return at
}

func (e *env) encodeCredential(t *testing.T, cred string) seam.ActionAttempt {
	t.Helper()
	return e.encode(t, map[string]string{"acs_encoder_id": encoderID, "acs_credential_id": cred})
}

func (e *env) attempt(t *testing.T, id string) seam.ActionAttempt {
	t.Helper()
	a := e.call(t, seamsim.PathGetActionAttempt, map[string]string{"action_attempt_id": id})
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	var at seam.ActionAttempt
	require.NoError(t, json.Unmarshal(a.body["action_attempt"], &at))
	return at
}

// settled polls /action_attempts/get until the attempt leaves pending.
func (e *env) settled(t *testing.T, id string) seam.ActionAttempt {
	t.Helper()
	var at seam.ActionAttempt
	require.Eventually(t, func() bool {
		a, err := e.do("Bearer "+apiKey, seamsim.PathGetActionAttempt, map[string]string{"action_attempt_id": id})
		if err != nil || a.status != http.StatusOK {
			return false
		}
		var got seam.ActionAttempt
		if json.Unmarshal(a.body["action_attempt"], &got) != nil || got.Status == seam.AttemptPending {
			return false
		}
		at = got
		return true
	}, wait, tick)
	return at
}
