package seam_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/promtest"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
)

const (
	apiKey    = "seam_test_key"
	encoderID = "e0000000-0000-4000-8000-000000000001"
	credID    = "c0000000-0000-4000-8000-000000000001"
	methodID  = "a0000000-0000-4000-8000-000000000001"
	attemptID = "11f6dc51-3c1a-4a0b-9c0e-5a8e7d2b6f01" // in testdata/action_attempt_success.json
)

// newClient returns a client of baseURL with fast retries; configure may
// change the options.
func newClient(t testing.TB, baseURL string, configure func(*seam.Options)) (*seam.Client, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o := seam.DefaultOptions()
	o.BaseURL, o.APIKey, o.Registerer = baseURL, apiKey, reg
	o.Timeout, o.RetryBase = 5*time.Second, time.Millisecond
	if configure != nil {
		configure(&o)
	}
	c, err := seam.New(o)
	require.NoError(t, err)
	return c, reg
}

func golden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// stub is a hand-made Seam: answer serves the n-th request (from 1).
type stub struct {
	srv   *httptest.Server
	calls atomic.Int32

	mu   sync.Mutex
	last *http.Request
	body []byte
}

func newStub(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *stub {
	t.Helper()
	s := &stub{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(s.calls.Add(1))
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.last, s.body = r, body
		s.mu.Unlock()
		answer(n, w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *stub) lastRequest() (*http.Request, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.body
}

// respond writes a Seam-style answer.
func respond(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("seam-request-id", "req-123")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// serve always answers status with body.
func serve(status int, body []byte) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) { respond(w, status, body) }
}

// dropConnection closes the connection without an answer.
func dropConnection(t *testing.T, w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	_ = conn.Close()
}

// newSim is a strict seamsim with one encoder, credential and access method.
func newSim(t *testing.T) (*seamsim.Sim, *httptest.Server) {
	t.Helper()
	sim, err := seamsim.New(seamsim.Options{
		APIKey: apiKey, EncodeDelay: 20 * time.Millisecond, Strict: true,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	require.NoError(t, err)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close)
	sim.AddEncoder(encoderID)
	sim.AddCredential(credID)
	sim.AddAccessMethod(methodID)
	return sim, srv
}

// awaitSettled polls the attempt through the client until it leaves pending.
func awaitSettled(t *testing.T, c *seam.Client, id string) seam.ActionAttempt {
	t.Helper()
	var at seam.ActionAttempt
	require.Eventually(t, func() bool {
		got, err := c.GetActionAttempt(t.Context(), id)
		if err != nil || got.Status == seam.AttemptPending {
			return false
		}
		at = got
		return true
	}, 10*time.Second, 5*time.Millisecond)
	return at
}

// requireIssued is the contract every successful encode read must meet,
// from the simulator or from a recorded Seam answer.
func requireIssued(t *testing.T, at seam.ActionAttempt, wantCred string) {
	t.Helper()
	require.Equal(t, seam.AttemptSuccess, at.Status)
	require.Equal(t, seam.ActionTypeEncodeCredential, at.ActionType)
	require.Nil(t, at.Error)
	cred, err := at.Credential()
	require.NoError(t, err)
	require.Equal(t, wantCred, cred.AcsCredentialID)
	require.True(t, cred.IsIssued)
	require.NotNil(t, cred.IssuedAt)
	require.NotNil(t, cred.CardNumber)
	require.NotEmpty(t, *cred.CardNumber)
	require.Equal(t, "card", cred.AccessMethod)
	require.NotEmpty(t, cred.AcsSystemID)
	require.False(t, cred.CreatedAt.IsZero())
}

func TestReadSuccessContract(t *testing.T) {
	testCases := []struct {
		Name string
		// start returns a client and the id of a successful attempt of credID.
		Start func(t *testing.T) (*seam.Client, string, string)
	}{
		{"seamsim", func(t *testing.T) (*seam.Client, string, string) {
			_, srv := newSim(t)
			c, _ := newClient(t, srv.URL, nil)
			at, err := c.EncodeCredential(t.Context(), seam.EncodeRequest{AcsEncoderID: encoderID, AcsCredentialID: credID})
			require.NoError(t, err)
			require.Equal(t, seam.AttemptPending, at.Status)
			awaitSettled(t, c, at.ActionAttemptID)
			return c, at.ActionAttemptID, credID
		}},
		{"recorded Seam answer", func(t *testing.T) (*seam.Client, string, string) {
			s := newStub(t, serve(http.StatusOK, golden(t, "action_attempt_success.json")))
			c, _ := newClient(t, s.srv.URL, nil)
			return c, attemptID, "73a0a199-024f-454d-a916-9bbda8502c12"
		}},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			client, id, cred := c.Start(t)
			at, err := client.GetActionAttempt(t.Context(), id)
			require.NoError(t, err)
			require.Equal(t, id, at.ActionAttemptID)
			requireIssued(t, at, cred)
		})
	}
}

func TestClientAgainstSim(t *testing.T) {
	sim, srv := newSim(t)
	c, _ := newClient(t, srv.URL, nil)
	ctx := t.Context()

	t.Run("access method encode", func(t *testing.T) {
		at, err := c.EncodeAccessMethod(ctx, encoderID, methodID)
		require.NoError(t, err)
		require.Equal(t, seam.AttemptPending, at.Status)
		at = awaitSettled(t, c, at.ActionAttemptID)
		require.Equal(t, seam.AttemptSuccess, at.Status)
		cred, err := at.Credential()
		require.NoError(t, err)
		require.True(t, cred.IsIssued)
	})

	t.Run("list attempts and get credential", func(t *testing.T) {
		sim.HoldNextEncode()
		held, err := c.EncodeCredential(ctx, seam.EncodeRequest{AcsEncoderID: encoderID, AcsCredentialID: credID})
		require.NoError(t, err)
		list, err := c.ListActionAttempts(ctx, []string{held.ActionAttemptID})
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, seam.AttemptPending, list[0].Status)

		cred, err := c.GetCredential(ctx, credID)
		require.NoError(t, err)
		require.False(t, cred.IsIssued)
		require.Nil(t, cred.CardNumber)
	})

	t.Run("list encoders", func(t *testing.T) {
		encs, page, err := c.ListEncoders(ctx, seam.ListEncodersRequest{AcsEncoderIDs: []string{encoderID}})
		require.NoError(t, err)
		require.Len(t, encs, 1)
		require.Equal(t, encoderID, encs[0].AcsEncoderID)
		require.False(t, page.HasNextPage)
		require.Nil(t, page.NextPageCursor)
	})

	t.Run("failed encode", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+seamsim.PathSimulateWillFail,
			jsonBody(t, map[string]string{"acs_encoder_id": encoderID, "error_code": "encoding_interrupted"}))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusOK, resp.StatusCode)

		at, err := c.EncodeCredential(ctx, seam.EncodeRequest{AcsEncoderID: encoderID, AcsCredentialID: credID})
		require.NoError(t, err)
		at = awaitSettled(t, c, at.ActionAttemptID)
		require.Equal(t, seam.AttemptError, at.Status)
		require.Equal(t, "encoding_interrupted", at.Error.Type)
	})

	t.Run("not found", func(t *testing.T) {
		_, err := c.GetActionAttempt(ctx, "f0000000-0000-4000-8000-00000000000f")
		var apiErr *seam.APIError
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusNotFound, apiErr.Status)
		require.Equal(t, "action_attempt_not_found", apiErr.Type)
		require.NotEmpty(t, apiErr.RequestID)
		require.False(t, apiErr.Temporary())
	})

	t.Run("read retried after 503", func(t *testing.T) {
		before := sim.Calls(seamsim.PathGetCredential)
		sim.FailNext(seamsim.PathGetCredential, http.StatusServiceUnavailable, 0)
		_, err := c.GetCredential(ctx, credID)
		require.NoError(t, err)
		require.Equal(t, before+2, sim.Calls(seamsim.PathGetCredential))
	})

	t.Run("encode not retried after 503", func(t *testing.T) {
		before := sim.Calls(seamsim.PathEncodeCredential)
		sim.FailNext(seamsim.PathEncodeCredential, http.StatusServiceUnavailable, 0)
		_, err := c.EncodeCredential(ctx, seam.EncodeRequest{AcsEncoderID: encoderID, AcsCredentialID: credID})
		var apiErr *seam.APIError
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusServiceUnavailable, apiErr.Status)
		require.Equal(t, before+1, sim.Calls(seamsim.PathEncodeCredential))
	})

	t.Run("wrong key", func(t *testing.T) {
		bad, _ := newClient(t, srv.URL, func(o *seam.Options) { o.APIKey = "seam_test_wrong" })
		_, err := bad.GetActionAttempt(ctx, "x")
		var apiErr *seam.APIError
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusUnauthorized, apiErr.Status)
		require.Equal(t, "unauthorized", apiErr.Type)
	})
}

func TestAPIErrors(t *testing.T) {
	testCases := []struct {
		Name        string
		Status      int
		Body        []byte
		WantType    string
		WantMessage string
		WantCalls   int32 // a read; temporary errors are retried (MaxRetries 2)
	}{
		{"error envelope", http.StatusNotFound, golden(t, "error_envelope.json"), "action_attempt_not_found", "Action attempt not found", 1},
		{"unauthorized", http.StatusUnauthorized, []byte(`{"error":{"type":"unauthorized","message":"Unauthorized"},"ok":false}`), "unauthorized", "Unauthorized", 1},
		{"invalid input", http.StatusBadRequest, []byte(`{"error":{"type":"invalid_input","message":"bad id","validation_errors":{"action_attempt_id":{"_errors":["Invalid uuid"]}}},"ok":false}`), "invalid_input", "bad id", 1},
		{"not JSON", http.StatusBadGateway, []byte("<html>Bad Gateway</html>"), "http_502", "<html>Bad Gateway</html>", 3},
		{"envelope without type", http.StatusInternalServerError, []byte(`{"ok":false}`), "http_500", `{"ok":false}`, 3},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			s := newStub(t, serve(c.Status, c.Body))
			client, _ := newClient(t, s.srv.URL, nil)
			_, err := client.GetActionAttempt(t.Context(), attemptID)
			var apiErr *seam.APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, c.Status, apiErr.Status)
			require.Equal(t, c.WantType, apiErr.Type)
			require.Equal(t, c.WantMessage, apiErr.Message)
			require.Equal(t, "req-123", apiErr.RequestID)
			require.Contains(t, apiErr.Error(), "req-123")
			require.Equal(t, c.WantCalls, s.calls.Load())
		})
	}

	t.Run("data kept", func(t *testing.T) {
		s := newStub(t, serve(http.StatusNotFound, golden(t, "error_envelope.json")))
		client, _ := newClient(t, s.srv.URL, nil)
		_, err := client.GetCredential(t.Context(), credID)
		var apiErr *seam.APIError
		require.ErrorAs(t, err, &apiErr)
		require.JSONEq(t, `{"action_attempt_id":"2b8e9c11-7f3d-4c55-8a1e-6d0f2a4b8c02"}`, string(apiErr.Data))
	})
}

// handlerTransport serves requests in memory, so that a test inside a
// synctest bubble waits on fake time.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func TestReadRetriedAfter429HonouringRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		success := golden(t, "action_attempt_success.json")
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if calls.Add(1) == 1 {
				w.Header().Set("Retry-After", "1")
				respond(w, http.StatusTooManyRequests, []byte(`{"error":{"type":"rate_limit_exceeded","message":"slow down"},"ok":false}`))
				return
			}
			respond(w, http.StatusOK, success)
		})
		client, reg := newClient(t, "https://seam.test", func(o *seam.Options) {
			o.HTTPClient = &http.Client{Transport: handlerTransport{h}}
			o.RetryBase = time.Hour // only Retry-After can make the retry come in time
		})
		start := time.Now()
		at, err := client.GetActionAttempt(t.Context(), attemptID)
		require.NoError(t, err)
		require.Equal(t, seam.AttemptSuccess, at.Status)
		require.Equal(t, int32(2), calls.Load())
		require.Equal(t, time.Second, time.Since(start), "waited exactly Retry-After (fake time)")

		m, err := promtest.Gather(reg)
		require.NoError(t, err)
		require.Equal(t, 1.0, m.Value("cardwire_seam_requests_total", "endpoint", "/action_attempts/get", "status", "429"))
		require.Equal(t, 1.0, m.Value("cardwire_seam_requests_total", "endpoint", "/action_attempts/get", "status", "200"))
	})
}

func TestReadRetriedAfterTransientFailure(t *testing.T) {
	success := golden(t, "action_attempt_success.json")
	testCases := []struct {
		Name  string
		First func(t *testing.T, w http.ResponseWriter)
	}{
		{"500", func(_ *testing.T, w http.ResponseWriter) {
			respond(w, http.StatusInternalServerError, []byte(`{"error":{"type":"internal_server_error","message":"oops"},"ok":false}`))
		}},
		{"503 without a body", func(_ *testing.T, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) }},
		{"connection dropped", dropConnection},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			s := newStub(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					c.First(t, w)
					return
				}
				respond(w, http.StatusOK, success)
			})
			client, _ := newClient(t, s.srv.URL, nil)
			at, err := client.GetActionAttempt(t.Context(), attemptID)
			require.NoError(t, err)
			require.Equal(t, seam.AttemptSuccess, at.Status)
			require.Equal(t, int32(2), s.calls.Load())
		})
	}

	t.Run("gives up after MaxRetries", func(t *testing.T) {
		s := newStub(t, serve(http.StatusServiceUnavailable, []byte(`{"error":{"type":"service_unavailable","message":"down"},"ok":false}`)))
		client, _ := newClient(t, s.srv.URL, func(o *seam.Options) { o.MaxRetries = 3 })
		_, err := client.ListActionAttempts(t.Context(), []string{attemptID})
		var apiErr *seam.APIError
		require.ErrorAs(t, err, &apiErr)
		require.True(t, apiErr.Temporary())
		require.Equal(t, int32(4), s.calls.Load())
	})
}

func TestEncodeNeverRetried(t *testing.T) {
	encodes := []struct {
		Name   string
		Encode func(*seam.Client, *testing.T) error
	}{
		{"encode_credential", func(c *seam.Client, t *testing.T) error {
			_, err := c.EncodeCredential(t.Context(), seam.EncodeRequest{AcsEncoderID: encoderID, AcsCredentialID: credID})
			return err
		}},
		{"access_methods/encode", func(c *seam.Client, t *testing.T) error {
			_, err := c.EncodeAccessMethod(t.Context(), encoderID, methodID)
			return err
		}},
	}
	failures := []struct {
		Name            string
		Answer          func(t *testing.T, w http.ResponseWriter, r *http.Request)
		WantUnavailable bool // else an *APIError
	}{
		{"500", func(_ *testing.T, w http.ResponseWriter, _ *http.Request) {
			respond(w, http.StatusInternalServerError, []byte(`{"error":{"type":"internal_server_error","message":"oops"},"ok":false}`))
		}, false},
		{"429 with Retry-After", func(_ *testing.T, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "1")
			respond(w, http.StatusTooManyRequests, []byte(`{"error":{"type":"rate_limit_exceeded","message":"slow down"},"ok":false}`))
		}, false},
		{"timeout", func(_ *testing.T, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, true},
		{"connection dropped", func(t *testing.T, w http.ResponseWriter, _ *http.Request) { dropConnection(t, w) }, true},
	}
	for _, enc := range encodes {
		for _, f := range failures {
			t.Run(enc.Name+"/"+f.Name, func(t *testing.T) {
				s := newStub(t, func(_ int, w http.ResponseWriter, r *http.Request) { f.Answer(t, w, r) })
				client, _ := newClient(t, s.srv.URL, func(o *seam.Options) { o.Timeout = 100 * time.Millisecond })
				err := enc.Encode(client, t)
				require.Error(t, err)
				if f.WantUnavailable {
					require.ErrorIs(t, err, seam.ErrUnavailable)
				} else {
					var apiErr *seam.APIError
					require.ErrorAs(t, err, &apiErr)
					require.True(t, apiErr.Temporary(), "temporary, and still not retried")
				}
				require.Equal(t, int32(1), s.calls.Load(), "a second encode could write a second card")
			})
		}
	}
}

func TestUnknownAttemptErrorTypeKeptVerbatim(t *testing.T) {
	s := newStub(t, serve(http.StatusOK, golden(t, "action_attempt_error.json")))
	client, _ := newClient(t, s.srv.URL, nil)
	at, err := client.GetActionAttempt(t.Context(), "2b8e9c11-7f3d-4c55-8a1e-6d0f2a4b8c02")
	require.NoError(t, err)
	require.Equal(t, seam.AttemptError, at.Status)
	require.Equal(t, &seam.ActionAttemptError{Type: "laser_misaligned", Message: "The encoder's laser is misaligned."}, at.Error)
	_, err = at.Credential()
	require.Error(t, err)
}

func TestUnknownFieldsIgnored(t *testing.T) {
	t.Run("envelope and attempt", func(t *testing.T) {
		var env map[string]any
		require.NoError(t, json.Unmarshal(golden(t, "action_attempt_success.json"), &env))
		env["new_top_level_field"] = map[string]any{"x": 1}
		env["action_attempt"].(map[string]any)["new_attempt_field"] = []int{1, 2}
		body, err := json.Marshal(env)
		require.NoError(t, err)
		s := newStub(t, serve(http.StatusOK, body))
		client, _ := newClient(t, s.srv.URL, nil)
		at, err := client.GetActionAttempt(t.Context(), attemptID)
		require.NoError(t, err)
		requireIssued(t, at, "73a0a199-024f-454d-a916-9bbda8502c12")
	})
	t.Run("encoders and pagination", func(t *testing.T) {
		s := newStub(t, serve(http.StatusOK, []byte(`{"acs_encoders":[{"acs_encoder_id":"`+encoderID+`","acs_system_id":"s","connected_account_id":"c",
			"workspace_id":"w","display_name":"Front desk","created_at":"2025-06-16T16:54:17.946Z","errors":[],"is_online":true}],
			"pagination":{"has_next_page":true,"next_page_cursor":"abc","next_page_url":"https://connect.getseam.com/acs/encoders/list?next_page_cursor=abc"},"ok":true}`)))
		client, _ := newClient(t, s.srv.URL, nil)
		encs, page, err := client.ListEncoders(t.Context(), seam.ListEncodersRequest{AcsSystemID: "s"})
		require.NoError(t, err)
		require.Len(t, encs, 1)
		require.Equal(t, "Front desk", encs[0].DisplayName)
		require.True(t, page.HasNextPage)
		require.Equal(t, "abc", *page.NextPageCursor)
	})
}

func TestRequestHeaders(t *testing.T) {
	testCases := []struct {
		Name          string
		WorkspaceID   string
		WantWorkspace string
	}{
		{"API key", "", ""},
		{"personal access token with workspace", "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000001"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			s := newStub(t, serve(http.StatusOK, golden(t, "action_attempt_pending.json")))
			client, _ := newClient(t, s.srv.URL, func(o *seam.Options) { o.WorkspaceID = c.WorkspaceID })
			_, err := client.EncodeCredential(t.Context(), seam.EncodeRequest{AcsEncoderID: encoderID, AcsCredentialID: credID})
			require.NoError(t, err)
			r, body := s.lastRequest()
			require.Equal(t, http.MethodPost, r.Method)
			require.Equal(t, "/acs/encoders/encode_credential", r.URL.Path)
			require.Equal(t, "Bearer "+apiKey, r.Header.Get("Authorization"))
			require.Equal(t, "application/json", r.Header.Get("Content-Type"))
			require.Equal(t, c.WantWorkspace, r.Header.Get("seam-workspace"))
			_, sent := r.Header["Seam-Workspace"]
			require.Equal(t, c.WantWorkspace != "", sent)
			require.JSONEq(t, `{"acs_encoder_id":"`+encoderID+`","acs_credential_id":"`+credID+`"}`, string(body))
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	testCases := []struct {
		Name      string
		Configure func(*seam.Options)
		WantErr   error
	}{
		{"no registerer", func(o *seam.Options) { o.Registerer = nil }, nil},
		{"zero timeout", func(o *seam.Options) { o.Timeout = 0 }, nil},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			o := seam.DefaultOptions()
			o.APIKey, o.Registerer = apiKey, prometheus.NewRegistry()
			require.NoError(t, o.Validate())
			c.Configure(&o)
			err := o.Validate()
			require.Error(t, err)
			if c.WantErr != nil {
				require.True(t, errors.Is(err, c.WantErr))
			}
			_, err = seam.New(o)
			require.Error(t, err)
		})
	}
}

func jsonBody(t *testing.T, v any) io.Reader {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return bytes.NewReader(b)
}
