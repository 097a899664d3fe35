package events_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/events"
)

// BenchmarkVerifyAndParse is the CPU work of one webhook before the publish:
// svix verification (two secrets, the match on the second, as during a
// rotation), the envelope parse and the subject.
func BenchmarkVerifyAndParse(b *testing.B) {
	secrets := []string{newSecret(b), newSecret(b)}
	v, err := events.NewVerifier(secrets, 5*time.Minute)
	require.NoError(b, err)
	body := golden(b, "acs_credential_issued.json")
	hdr := signed(b, secrets[1], "msg_2Lh1bench", time.Now(), body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(body, hdr, ""); err != nil {
			b.Fatal(err)
		}
		env, err := events.ParseEnvelope(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := env.Subject(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseEnvelope is the envelope parse and subject alone.
func BenchmarkParseEnvelope(b *testing.B) {
	body := golden(b, "acs_credential_issued.json")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		env, err := events.ParseEnvelope(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := env.Subject(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReceiver is the whole handler: read, verify, parse, publish to a
// real embedded JetStream server (file storage) and wait for the PubAck.
// Every iteration is a new webhook id, so each one is stored.
func BenchmarkReceiver(b *testing.B) {
	h := newHarness(b, nil)
	handler := h.srvHandler(b)
	body := golden(b, "acs_credential_issued.json")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		req := h.request(b, body, "msg_bench"+strconv.Itoa(i))
		rec := httptest.NewRecorder()
		b.StartTimer()
		handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkReceiverParallel is BenchmarkReceiver from GOMAXPROCS goroutines
// at once, the shape of a burst. Requests are signed before the timer runs.
func BenchmarkReceiverParallel(b *testing.B) {
	h := newHarness(b, nil)
	handler := h.srvHandler(b)
	body := golden(b, "acs_credential_issued.json")
	reqs := make([]*http.Request, b.N)
	for i := range reqs {
		reqs[i] = h.request(b, body, "msg_par"+strconv.Itoa(i))
	}
	var next atomic.Int64
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, reqs[next.Add(1)-1])
			if rec.Code != http.StatusNoContent {
				b.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
		}
	})
}

func (h *harness) srvHandler(b *testing.B) http.Handler {
	b.Helper()
	return h.srv.Config.Handler
}

func (h *harness) request(b *testing.B, body []byte, id string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, events.Path, bytes.NewReader(body))
	req.Header = signed(b, h.secrets[0], id, time.Now(), body)
	req.ContentLength = int64(len(body))
	return req
}

// BenchmarkReceiverWorkspaces is BenchmarkReceiverParallel with 1 and with
// 1,000 configured workspaces (WORKSPACES_FILE), each event naming one of
// them and signed with its secret: the secrets tried are the named
// workspace's, so the cost must not grow with the number configured.
func BenchmarkReceiverWorkspaces(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run("workspaces="+strconv.Itoa(n), func(b *testing.B) {
			keys := make(map[string]events.WorkspaceSecrets, n)
			ids := make([]string, n)
			for i := range n {
				ids[i] = "ws-" + strconv.Itoa(i)
				keys[ids[i]] = events.WorkspaceSecrets{Label: ids[i], Secrets: []string{newSecret(b), newSecret(b)}}
			}
			verifier, err := events.NewWorkspaceVerifier(keys, 5*time.Minute)
			require.NoError(b, err)
			h := newHarness(b, func(o *events.Options) { o.Verifier = verifier })
			handler := h.srvHandler(b)
			reqs := make([]*http.Request, b.N)
			for i := range reqs {
				ws := ids[i%n]
				body := eventFor(b, ws)
				// The second secret, as during a rotation: both are tried.
				reqs[i] = httptest.NewRequest(http.MethodPost, events.Path, bytes.NewReader(body))
				reqs[i].Header = signed(b, keys[ws].Secrets[1], "msg_ws"+strconv.Itoa(i), time.Now(), body)
				reqs[i].ContentLength = int64(len(body))
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := httptest.NewRecorder()
					handler.ServeHTTP(rec, reqs[next.Add(1)-1])
					if rec.Code != http.StatusNoContent {
						b.Errorf("status %d: %s", rec.Code, rec.Body)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "webhooks/s")
		})
	}
}

// BenchmarkVerifyWorkspaces is the verification alone (envelope parse to
// find the workspace, then its secrets) with 1 and with 1,000 configured
// workspaces.
func BenchmarkVerifyWorkspaces(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run("workspaces="+strconv.Itoa(n), func(b *testing.B) {
			keys := make(map[string]events.WorkspaceSecrets, n)
			for i := range n {
				keys["ws-"+strconv.Itoa(i)] = events.WorkspaceSecrets{Label: "ws", Secrets: []string{newSecret(b), newSecret(b)}}
			}
			v, err := events.NewWorkspaceVerifier(keys, 5*time.Minute)
			require.NoError(b, err)
			ws := "ws-" + strconv.Itoa(n-1)
			body := eventFor(b, ws)
			hdr := signed(b, keys[ws].Secrets[1], "msg_verify", time.Now(), body)
			b.ReportAllocs()
			for b.Loop() {
				env, _ := events.ParseEnvelope(body)
				if _, err := v.Verify(body, hdr, env.WorkspaceID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
