package seam_test

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/seam"
)

// The API key never travels in clear text: https, or http to loopback.
func TestBaseURLMustBeHTTPS(t *testing.T) {
	for _, c := range []struct {
		URL string
		OK  bool
	}{
		{"https://connect.getseam.com", true},
		{"http://127.0.0.1:8090", true},
		{"http://localhost:8090", true},
		{"http://[::1]:8090", true},
		{"http://connect.getseam.com", false},
		{"http://10.0.0.5:8090", false},
		{"ftp://connect.getseam.com", false},
		{"connect.getseam.com", false},
	} {
		t.Run(c.URL, func(t *testing.T) {
			o := seam.DefaultOptions()
			o.BaseURL, o.APIKey, o.Registerer = c.URL, apiKey, prometheus.NewRegistry()
			_, err := seam.New(o)
			if c.OK {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, "BaseURL")
			}
		})
	}
}

// A burst of reads is sent no faster than MaxRPS (fake time).
func TestRateLimitHoldsUnderABurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		success := golden(t, "action_attempt_success.json")
		var mu sync.Mutex
		var at []time.Time
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
			respond(w, http.StatusOK, success)
		})
		client, _ := newClient(t, "https://seam.test", func(o *seam.Options) {
			o.HTTPClient = &http.Client{Transport: handlerTransport{h}}
			o.MaxRPS, o.Burst = 5, 1
		})
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				_, err := client.GetActionAttempt(t.Context(), attemptID)
				require.NoError(t, err)
			})
		}
		wg.Wait()
		require.Len(t, at, 20)
		for i := range at {
			n := 0
			for _, b := range at {
				if !b.Before(at[i]) && b.Before(at[i].Add(time.Second)) {
					n++
				}
			}
			require.LessOrEqual(t, n, 5, "requests in the second from %v", at[i])
		}
	})
}

// A 429 with Retry-After pauses every caller of the client, not only the
// one that got it.
func TestRetryAfterPausesEveryCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		success := golden(t, "action_attempt_success.json")
		var calls atomic.Int32
		var second time.Time
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			switch calls.Add(1) {
			case 1:
				w.Header().Set("Retry-After", "3")
				respond(w, http.StatusTooManyRequests, []byte(`{"error":{"type":"rate_limit_exceeded","message":"slow down"},"ok":false}`))
				return
			case 2:
				second = time.Now()
			}
			respond(w, http.StatusOK, success)
		})
		client, _ := newClient(t, "https://seam.test", func(o *seam.Options) {
			o.HTTPClient = &http.Client{Transport: handlerTransport{h}}
			o.MaxRetries = 0 // the first caller gives up at once
		})
		start := time.Now()
		_, err := client.GetActionAttempt(t.Context(), attemptID)
		require.Error(t, err)
		// Another caller, another endpoint: only when it is sent matters.
		_, _ = client.GetCredential(t.Context(), credID)
		require.Equal(t, 3*time.Second, second.Sub(start), "the next request waited for Retry-After")
	})
}

// Clients made With other credentials (one per workspace) send their own
// credentials and share one rate limit: SEAM_MAX_RPS is the process's.
// A client without credentials sends nothing.
func TestWithSharesTheRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		success := golden(t, "action_attempt_success.json")
		var mu sync.Mutex
		var at []time.Time
		auth := map[string]int{}
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			at = append(at, time.Now())
			auth[r.Header.Get("Authorization")+"|"+r.Header.Get("seam-workspace")]++
			mu.Unlock()
			respond(w, http.StatusOK, success)
		})
		base, _ := newClient(t, "https://seam.test", func(o *seam.Options) {
			o.HTTPClient = &http.Client{Transport: handlerTransport{h}}
			o.APIKey, o.MaxRPS, o.Burst = "", 5, 1
		})
		_, err := base.GetActionAttempt(t.Context(), attemptID)
		require.ErrorIs(t, err, seam.ErrNoAPIKey)
		_, err = base.With(seam.Credentials{})
		require.ErrorIs(t, err, seam.ErrNoAPIKey)
		a, err := base.With(seam.Credentials{APIKey: "seam_test_a"})
		require.NoError(t, err)
		b, err := base.With(seam.Credentials{APIKey: "seam_at_pat", WorkspaceID: "ws-b"})
		require.NoError(t, err)
		require.Equal(t, seam.Credentials{APIKey: "seam_at_pat", WorkspaceID: "ws-b"}, b.Credentials())
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				c := a
				if i%2 == 1 {
					c = b
				}
				_, err := c.GetActionAttempt(t.Context(), attemptID)
				require.NoError(t, err)
			})
		}
		wg.Wait()
		require.Equal(t, map[string]int{"Bearer seam_test_a|": 10, "Bearer seam_at_pat|ws-b": 10}, auth)
		for i := range at {
			n := 0
			for _, x := range at {
				if !x.Before(at[i]) && x.Before(at[i].Add(time.Second)) {
					n++
				}
			}
			require.LessOrEqual(t, n, 5, "requests of both clients in the second from %v", at[i])
		}
	})
}
