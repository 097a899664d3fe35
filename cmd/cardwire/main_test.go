package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/eventstest"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
	"github.com/cardwire/cardwire/internal/store"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/worker"
	"github.com/cardwire/cardwire/internal/workspaces"
)

const (
	simKey      = "seam_test_cli"
	ws          = "00000000-0000-4000-8000-0000000000aa"
	workerToken = "tok-cli"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// cli runs the command line args with env and returns its stdout.
func runCLI(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(t.Context(), args, envOf(env), &out)
	return out.String(), err
}

// cliOK runs args and fails the test on an error.
func cliOK(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	out, err := runCLI(t, env, args...)
	require.NoError(t, err, "cardwire %s", strings.Join(args, " "))
	return out
}

// cliJSON runs args with --output json (after the command) and decodes
// the answer into v; it returns the raw JSON too.
func cliJSON(t *testing.T, env map[string]string, v any, args ...string) string {
	t.Helper()
	out := cliOK(t, env, append(args, "--output", "json")...)
	require.NoError(t, json.Unmarshal([]byte(out), v), out)
	return out
}

func with(env map[string]string, kv ...string) map[string]string {
	m := maps.Clone(env)
	if m == nil {
		m = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func newSecret() string {
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// closedURL is a loopback address nothing listens on.
func closedURL(t *testing.T, scheme string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return scheme + "://" + addr
}

// seamServer serves sim over real HTTP and returns the env that reaches
// it with its API key.
func seamServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func newSim(t *testing.T, o seamsim.Options) (*seamsim.Sim, map[string]string) {
	t.Helper()
	if o.APIKey == "" {
		o.APIKey = simKey
	}
	if o.WorkspaceID == "" {
		o.WorkspaceID = ws
	}
	o.Log = zerolog.Nop()
	sim, err := seamsim.New(o)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	return sim, map[string]string{"SEAM_API_KEY": o.APIKey, "SEAM_API_URL": seamServer(t, sim.Handler()), "SEAM_WORKSPACE_ID": o.WorkspaceID}
}

// stack is the system with the simulator as Seam: sim → signed webhooks →
// receiver → SEAM_EVENTS, and optionally a worker (track-only) with its
// API, whose bucket reads can be made to fail.
type stack struct {
	nats   *natstest.Server
	js     jetstream.JetStream
	sim    *seamsim.Sim
	seam   *seam.Client
	env    map[string]string
	faults *atomic.Bool
	api    string
}

func newStack(t *testing.T, withWorker bool) *stack {
	t.Helper()
	ctx := t.Context()
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	require.NoError(t, streams.EnsureEventsStream(ctx, js, streams.DefaultEventsStreamOptions()))
	secret := newSecret()
	receiver := eventstest.Serve(t, eventstest.Verifier(t, secret), js)

	sim, env := newSim(t, seamsim.Options{WebhookURL: receiver.URL + events.Path, WebhookSecret: secret, EncodeDelay: 20 * time.Millisecond})
	co := seam.DefaultOptions()
	co.BaseURL, co.APIKey, co.Registerer = env["SEAM_API_URL"], simKey, prometheus.NewRegistry()
	client, err := seam.New(co)
	require.NoError(t, err)
	s := &stack{nats: srv, js: js, sim: sim, seam: client, env: with(env, "NATS_URL", srv.ClientURL()), faults: &atomic.Bool{}}
	if !withWorker {
		return s
	}
	owned, err := streams.EnsureWorker(ctx, js, streams.DefaultWorkerOptions())
	require.NoError(t, err)
	wo := worker.DefaultOptions()
	wo.JS, wo.Owned, wo.Registerer = js, owned, prometheus.NewRegistry()
	wo.Bucket = faultyKV{owned.Bucket, s.faults}
	wo.MaxDeliver, wo.RetryDelay, wo.Concurrency, wo.HandleTimeout = 2, 10*time.Millisecond, 4, 5*time.Second
	wo.API.Token = workerToken
	w, err := worker.New(ctx, wo)
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	api := httptest.NewServer(w.Handler())
	t.Cleanup(api.Close)
	s.api = api.URL
	s.env = with(s.env, "WORKER_API_URL", api.URL, "WORKER_API_TOKEN", workerToken)
	return s
}

// faultyKV is the worker's real bucket, whose reads fail while on is set:
// a transient store failure, which the worker retries and then
// dead-letters.
type faultyKV struct {
	jetstream.KeyValue
	on *atomic.Bool
}

var _ store.KV = faultyKV{}

var errBucketDown = errors.New("injected: the bucket is unavailable")

func (k faultyKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if k.on.Load() {
		return nil, errBucketDown
	}
	return k.KeyValue.Get(ctx, key)
}

// encode has the simulator encode a credential: after its EncodeDelay it
// logs an acs_credential.issued event and sends its webhook (unless told
// otherwise).
func (s *stack) encode(t *testing.T, encoder, cred string) {
	t.Helper()
	_, err := s.seam.EncodeCredential(t.Context(), seam.EncodeRequest{AcsEncoderID: encoder, AcsCredentialID: cred})
	require.NoError(t, err)
}

// register registers a pending encoding (track-only) with the worker
// and returns its id.
func (s *stack) register(t *testing.T, encoder, cred string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"workspace_id": ws, "acs_encoder_id": encoder, "acs_credential_id": cred, "action_attempt_id": "aa-" + cred})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.api+"/v1/encodings", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+workerToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(raw))
	var rec struct {
		EncodingID string `json:"encoding_id"`
	}
	require.NoError(t, json.Unmarshal(raw, &rec))
	return rec.EncodingID
}

// workspacesFile writes a WORKSPACES_FILE and returns its path.
func workspacesFile(t *testing.T, f workspaces.File) string {
	t.Helper()
	b, err := json.Marshal(f)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "workspaces.json")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	return path
}

func TestHelp(t *testing.T) {
	testCases := []struct {
		Name string
		Args []string
		Want []string
	}{
		{"top level", []string{"-h"}, []string{"usage: cardwire", "SEAM_API_KEY", "SEAM_WORKSPACE_ID", "WORKSPACES_FILE", "NATS_URL", "WORKER_API_URL", "WORKER_API_TOKEN", "--output"}},
		{"help command", []string{"help"}, []string{"usage: cardwire", "deadletters retry"}},
		{"a group", []string{"webhooks", "--help"}, []string{"usage: cardwire"}},
		{"register", []string{"webhooks", "register", "-h"}, []string{"--url", "-print-workspace-entry", "SEAM_API_KEY", "WORKSPACES_FILE"}},
		{"replay", []string{"events", "replay", "--help"}, []string{"-since", "-until", "NATS_URL", "SEAM_API_KEY"}},
		{"retry", []string{"deadletters", "retry", "-h"}, []string{"-all", "NATS_CREDS_FILE"}},
		{"encodings", []string{"encodings", "list", "-h", "--output", "json"}, []string{"-status", "WORKER_API_TOKEN"}},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			out := cliOK(t, nil, c.Args...)
			for _, w := range c.Want {
				require.Contains(t, out, w)
			}
			require.Zero(t, exitCode(nil, io.Discard))
		})
	}
}

// Every mistake is one line naming what to set or check: exit status 2
// for the command line, 1 for the rest.
func TestErrors(t *testing.T) {
	_, simEnv := newSim(t, seamsim.Options{})
	notFound := seamServer(t, http.NotFoundHandler())
	emptyNATS := natstest.RunJetStream(t)
	twoWorkspaces := workspacesFile(t, workspaces.File{Workspaces: []workspaces.WorkspaceEntry{
		{WorkspaceID: "ws-a", Name: "Hotel A", WebhookSecrets: []string{newSecret()}, SeamAPIKey: "seam_a"},
		{WorkspaceID: "ws-b", Name: "Hotel B", WebhookSecrets: []string{newSecret()}, SeamAPIKey: "seam_b"},
	}})
	keyFile := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(keyFile, []byte(simKey), 0o600))

	testCases := []struct {
		Name string
		Env  map[string]string
		Args []string
		Want string
		Code int
	}{
		// The command line.
		{"no command", nil, nil, "a command is required", 2},
		{"unknown command", nil, []string{"frobnicate"}, `unknown command "frobnicate"`, 2},
		{"no subcommand", nil, []string{"webhooks"}, "webhooks needs a subcommand: register, list, delete, rotate", 2},
		{"unknown subcommand", nil, []string{"deadletters", "frob"}, `unknown subcommand "frob" of deadletters`, 2},
		{"unknown flag", nil, []string{"webhooks", "list", "--bogus"}, "flag provided but not defined: -bogus", 2},
		{"bad output", nil, []string{"--output", "yaml", "webhooks", "list"}, "--output must be text or json", 2},
		{"register without url", simEnv, []string{"webhooks", "register"}, "--url is required", 2},
		{"register over plain http", simEnv, []string{"webhooks", "register", "--url", "http://hooks.example.com/webhooks/seam"}, "--url must be https://", 2},
		{"register another path", simEnv, []string{"webhooks", "register", "--url", "https://hooks.example.com/"}, "must end in the receiver's webhook path /webhooks/seam", 2},
		{"delete without id", simEnv, []string{"webhooks", "delete"}, "webhooks delete needs a webhook id", 2},
		{"finish without old", simEnv, []string{"webhooks", "rotate", "--finish"}, "--finish needs --old", 2},
		{"replay without since", simEnv, []string{"events", "replay"}, "events replay needs --since", 2},
		{"replay with a bad since", simEnv, []string{"events", "replay", "--since", "yesterday"}, "--since: want an RFC 3339 time", 2},
		{"replay backwards", simEnv, []string{"events", "replay", "--since", "1m", "--until", "2h"}, "must be before --until", 2},
		{"retry without seq", nil, []string{"deadletters", "retry"}, "needs one stream sequence number or --all", 2},
		{"show a bad seq", nil, []string{"deadletters", "show", "abc"}, "want a stream sequence number", 2},
		{"list a settled status", nil, []string{"encodings", "list", "--status", "issued"}, "--status can only be pending", 2},

		// Seam's configuration.
		{"no API key", nil, []string{"webhooks", "list"}, "SEAM_API_KEY (or SEAM_API_KEY_FILE) must be set, or WORKSPACES_FILE with --workspace", 1},
		{"key and key file", map[string]string{"SEAM_API_KEY": "seam_x", "SEAM_API_KEY_FILE": keyFile}, []string{"webhooks", "list"}, "at most one of SEAM_API_KEY and SEAM_API_KEY_FILE", 1},
		{"PAT without workspace", map[string]string{"SEAM_API_KEY": "seam_at_1234"}, []string{"webhooks", "list"}, "personal access token (seam_at…): set SEAM_WORKSPACE_ID (or --workspace)", 1},
		{"replay needs the workspace", map[string]string{"SEAM_API_KEY": "seam_x"}, []string{"events", "replay", "--since", "1h"}, "set SEAM_WORKSPACE_ID (or --workspace) to the workspace of SEAM_API_KEY", 1},
		{"Seam over plain http", map[string]string{"SEAM_API_KEY": "seam_x", "SEAM_API_URL": "http://connect.getseam.com"}, []string{"webhooks", "list"}, "SEAM_API_URL: Options.BaseURL \"http://connect.getseam.com\" must be https://", 1},
		{"Seam unreachable", map[string]string{"SEAM_API_KEY": "seam_x", "SEAM_API_URL": closedURL(t, "http")}, []string{"webhooks", "list"}, "cannot reach Seam at http://127.0.0.1:", 1},
		{"not Seam", map[string]string{"SEAM_API_KEY": "seam_x", "SEAM_API_URL": notFound}, []string{"webhooks", "list"}, "has no /webhooks/list (404): is it Seam's API", 1},
		{"wrong key", with(simEnv, "SEAM_API_KEY", "seam_wrong"), []string{"webhooks", "list"}, "credentials refused by Seam at " + simEnv["SEAM_API_URL"] + " (401 unauthorized): check SEAM_API_KEY (or SEAM_API_KEY_FILE)", 1},
		{"wrong key in the file", map[string]string{"WORKSPACES_FILE": twoWorkspaces, "SEAM_API_URL": simEnv["SEAM_API_URL"]}, []string{"webhooks", "list", "--workspace", "hotel a"}, "(401 unauthorized): check the seam_api_key of workspace Hotel A in WORKSPACES_FILE", 1},
		{"key from its file", with(simEnv, "SEAM_API_KEY", "", "SEAM_API_KEY_FILE", keyFile), []string{"webhooks", "delete", "wh-1"}, "no webhook wh-1 in workspace " + ws, 1},
		{"file and key", map[string]string{"WORKSPACES_FILE": twoWorkspaces, "SEAM_API_KEY": "seam_x"}, []string{"webhooks", "list"}, "at most one of WORKSPACES_FILE and SEAM_API_KEY", 1},
		{"file without --workspace", map[string]string{"WORKSPACES_FILE": twoWorkspaces}, []string{"webhooks", "list"}, `WORKSPACES_FILE has 2 workspaces: pass --workspace with one of "Hotel A" (ws-a), "Hotel B" (ws-b)`, 1},
		{"file without that workspace", map[string]string{"WORKSPACES_FILE": twoWorkspaces}, []string{"webhooks", "list", "--workspace", "Hotel C"}, `--workspace "Hotel C" is not in WORKSPACES_FILE`, 1},
		{"file missing", map[string]string{"WORKSPACES_FILE": "/nonexistent/workspaces.json"}, []string{"webhooks", "list"}, "WORKSPACES_FILE: open /nonexistent/workspaces.json", 1},

		// NATS and the worker.
		{"NATS unreachable", map[string]string{"NATS_URL": closedURL(t, "nats")}, []string{"deadletters", "list"}, "cannot reach NATS at nats://127.0.0.1:", 1},
		{"NATS without the stream", map[string]string{"NATS_URL": emptyNATS.ClientURL()}, []string{"deadletters", "list"}, "has no stream SEAM_EVENTS: is NATS_URL cardwire's NATS?", 1},
		{"NATS creds file missing", map[string]string{"NATS_URL": emptyNATS.ClientURL(), "NATS_CREDS_FILE": "/nonexistent.creds"}, []string{"deadletters", "list"}, "NATS_CREDS_FILE: stat /nonexistent.creds", 1},
		{"worker unreachable", map[string]string{"WORKER_API_URL": closedURL(t, "http")}, []string{"encodings", "get", "enc-1"}, "cannot reach the worker API at http://127.0.0.1:", 1},
		{"not the worker", map[string]string{"WORKER_API_URL": notFound}, []string{"encodings", "list"}, "does not serve /v1/encodings (404 http_404): is it the worker's API port", 1},
		{"worker URL not a URL", map[string]string{"WORKER_API_URL": "127.0.0.1:8081"}, []string{"encodings", "list"}, "WORKER_API_URL must be an absolute http(s) URL", 1},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			_, err := runCLI(t, c.Env, c.Args...)
			require.Error(t, err)
			require.Contains(t, err.Error(), c.Want)
			var stderr bytes.Buffer
			require.Equal(t, c.Code, exitCode(err, &stderr))
			require.Equal(t, 1+c.Code/2, strings.Count(stderr.String(), "\n"), "one line (and the hint for usage errors): %s", stderr.String())
		})
	}
}
