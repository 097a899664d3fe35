package events_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/cardwire/cardwire/internal/broker"
	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/promtest"
	"github.com/cardwire/cardwire/internal/streams"
)

// harness is a Receiver behind a real HTTP server, publishing to a real
// embedded JetStream server.
type harness struct {
	nats    *natstest.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	reg     *prometheus.Registry
	srv     *httptest.Server
	secrets []string
	logs    *syncBuffer
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newSecret(t testing.TB) string {
	t.Helper()
	key := make([]byte, 24)
	_, err := rand.Read(key)
	require.NoError(t, err)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// newHarness starts everything; configure may change the options (and may
// wrap the publisher) before the receiver is built.
func newHarness(t testing.TB, configure func(*events.Options)) *harness {
	t.Helper()
	h := &harness{nats: natstest.RunJetStream(t), reg: prometheus.NewRegistry(), secrets: []string{newSecret(t), newSecret(t)}, logs: &syncBuffer{}}
	log := zerolog.New(h.logs).Level(zerolog.DebugLevel)
	o := broker.DefaultOptions()
	o.URL, o.Name, o.ReconnectWait = h.nats.ClientURL(), "test-receiver", 20*time.Millisecond
	nc, err := broker.Connect(o, log, h.reg)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	ctx := t.Context()
	require.NoError(t, broker.WaitConnected(ctx, nc))
	h.nc = nc
	h.js, err = jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, streams.EnsureEventsStream(ctx, h.js, streams.DefaultEventsStreamOptions()))
	h.stream, err = h.js.Stream(ctx, streams.EventsStream)
	require.NoError(t, err)

	verifier, err := events.NewVerifier(h.secrets, 5*time.Minute)
	require.NoError(t, err)
	opts := events.DefaultOptions()
	opts.Verifier, opts.Publisher, opts.Registerer = verifier, h.js, h.reg
	opts.PublishTimeout = time.Second
	opts.Log = log
	if configure != nil {
		configure(&opts)
	}
	rc, err := events.NewReceiver(opts)
	require.NoError(t, err)
	h.srv = httptest.NewServer(rc.Routes())
	t.Cleanup(h.srv.Close)
	return h
}

// signed returns svix headers for body, signed with secret at ts by the
// svix library itself.
func signed(t testing.TB, secret, id string, ts time.Time, body []byte) http.Header {
	t.Helper()
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	sig, err := wh.Sign(id, ts, body)
	require.NoError(t, err)
	h := http.Header{}
	h.Set("svix-id", id)
	h.Set("svix-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("svix-signature", sig)
	h.Set("Content-Type", "application/json")
	return h
}

type answer struct {
	Status     int
	Header     http.Header
	ErrType    string
	ErrMessage string
}

func (h *harness) do(t testing.TB, method, path string, header http.Header, body []byte) answer {
	t.Helper()
	a, err := h.try(method, path, header, body)
	require.NoError(t, err)
	return a
}

// try sends one request and checks the answer's shape; it returns an error
// instead of failing, so it may run off the test goroutine.
func (h *harness) try(method, path string, header http.Header, body []byte) (answer, error) {
	req, err := http.NewRequest(method, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{Status: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode < 300 {
		if len(raw) != 0 {
			return a, fmt.Errorf("2xx with a body: %q", raw)
		}
		return a, nil
	}
	var env struct {
		Error struct{ Type, Message string } `json:"error"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return a, fmt.Errorf("error body %q is not the JSON error shape: %w", raw, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" || env.Error.Type == "" || env.Error.Message == "" {
		return a, fmt.Errorf("error answer %q with content type %q", raw, ct)
	}
	a.ErrType, a.ErrMessage = env.Error.Type, env.Error.Message
	return a, nil
}

func (h *harness) post(t testing.TB, header http.Header, body []byte) answer {
	t.Helper()
	return h.do(t, http.MethodPost, events.Path, header, body)
}

func (h *harness) msgCount(t testing.TB) uint64 {
	t.Helper()
	info, err := h.stream.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

func (h *harness) last(t testing.TB, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	m, err := h.stream.GetLastMsgForSubject(context.Background(), subject)
	require.NoError(t, err)
	return m
}

// metric is the value of name summed over the series with the given labels
// (pairs of name, value), or -1 if the metric does not exist.
func metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := promtest.Gather(g)
	require.NoError(t, err)
	return mfs.Value(name, labels...)
}
