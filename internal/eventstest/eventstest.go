// Package eventstest starts webhook receivers for tests, wired as
// cmd/webhook-receiver wires them: a real events.Receiver publishing to a
// real JetStream. Only *_test.go files import this package.
package eventstest

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardwire/cardwire/internal/events"
)

// Tolerance is the signature timestamp tolerance of Verifier.
const Tolerance = 5 * time.Minute

// Verifier accepts webhooks signed with any of secrets.
func Verifier(t testing.TB, secrets ...string) *events.Verifier {
	t.Helper()
	v, err := events.NewVerifier(secrets, Tolerance)
	if err != nil {
		t.Fatalf("eventstest: verifier: %v", err)
	}
	return v
}

// Routes are the routes of a receiver that verifies with v and publishes
// to js, its metrics on reg (a registry of its own when nil).
func Routes(t testing.TB, v *events.Verifier, js jetstream.JetStream, reg prometheus.Registerer) http.Handler {
	t.Helper()
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	o := events.DefaultOptions()
	o.Verifier, o.Publisher, o.Registerer = v, js, reg
	rc, err := events.NewReceiver(o)
	if err != nil {
		t.Fatalf("eventstest: receiver: %v", err)
	}
	return rc.Routes()
}

// Serve is Routes behind a test HTTP server, closed when the test ends.
func Serve(t testing.TB, v *events.Verifier, js jetstream.JetStream) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Routes(t, v, js, nil))
	t.Cleanup(srv.Close)
	return srv
}
