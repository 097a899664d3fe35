package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/eventstest"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/worker"
	"github.com/cardwire/cardwire/internal/workspaces"
)

const (
	wsAurora, wsBorealis = "ws-aurora", "ws-borealis"
	auroraKey, pat       = "seam_test_aurora", "seam_at_e2e_token"
	deskToken, opsToken  = "aurora-front-desk-1", "operators-token-0001"
)

// tenantStack is two properties served by one deployment: Aurora with its
// own API key, Borealis through the personal access token, each signing
// its webhooks with its own secret; a front-desk token reaching Aurora
// only and an operators' token reaching both.
type tenantStack struct {
	multi  *seamsim.Multi
	api    *httptest.Server
	reg    *prometheus.Registry
	out    *outcomes
	secret map[string]string
}

func newTenantStack(t *testing.T) *tenantStack {
	t.Helper()
	ctx := t.Context()
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	s := &tenantStack{reg: prometheus.NewRegistry(), out: &outcomes{changed: make(chan struct{})},
		secret: map[string]string{wsAurora: newSecret(), wsBorealis: newSecret()}}
	file := fmt.Sprintf(`{
  "workspaces": [
    {"workspace_id": %q, "name": "Hotel Aurora", "webhook_secrets": [%q], "seam_api_key": %q},
    {"workspace_id": %q, "name": "Hotel Borealis", "webhook_secrets": [%q]}
  ],
  "seam_personal_access_token": %q,
  "api_tokens": [
    {"name": "aurora desk", "token": %q, "workspaces": [%q]},
    {"name": "operators", "token": %q, "workspaces": ["*"]}
  ]
}`, wsAurora, s.secret[wsAurora], auroraKey, wsBorealis, s.secret[wsBorealis], pat, deskToken, wsAurora, opsToken)
	cfg, err := workspaces.Parse([]byte(file), t.TempDir(), os.ReadFile)
	require.NoError(t, err)

	// The receiver, as cmd/webhook-receiver builds it from the file.
	require.NoError(t, streams.EnsureEventsStream(ctx, js, streams.DefaultEventsStreamOptions()))
	keys := map[string]events.WorkspaceSecrets{}
	for _, id := range cfg.IDs() {
		w, _ := cfg.Workspace(id)
		keys[id] = events.WorkspaceSecrets{Label: w.Label(), Secrets: []string{w.WebhookSecrets[0].Reveal()}}
	}
	verifier, err := events.NewWorkspaceVerifier(keys, eventstest.Tolerance)
	require.NoError(t, err)
	receiver := eventstest.Serve(t, verifier, js)

	s.multi, err = seamsim.NewMulti(seamsim.MultiOptions{
		Workspaces: []seamsim.WorkspaceOptions{
			{WorkspaceID: wsAurora, Name: "Hotel Aurora", APIKey: auroraKey, WebhookSecret: s.secret[wsAurora]},
			{WorkspaceID: wsBorealis, Name: "Hotel Borealis", WebhookSecret: s.secret[wsBorealis]},
		},
		PersonalAccessToken: pat, WebhookURL: receiver.URL + events.Path, EncodeDelay: 50 * time.Millisecond, Log: zerolog.Nop(),
	})
	require.NoError(t, err)
	t.Cleanup(s.multi.Close)
	simSrv := httptest.NewServer(s.multi.Handler())
	t.Cleanup(simSrv.Close)

	// The worker, as cmd/worker builds it: a Seam client without
	// credentials of its own, each workspace's from the file.
	owned, err := streams.EnsureWorker(ctx, js, streams.DefaultWorkerOptions())
	require.NoError(t, err)
	co := seam.DefaultOptions()
	co.BaseURL, co.Registerer, co.RetryBase, co.MaxRetries = simSrv.URL, s.reg, 10*time.Millisecond, 1
	client, err := seam.New(co)
	require.NoError(t, err)
	wo := worker.DefaultOptions()
	wo.JS, wo.Owned, wo.Registerer, wo.Seam, wo.Workspaces = js, owned, s.reg, client, workspaces.Static(cfg)
	wo.Concurrency, wo.HandleTimeout = 4, 5*time.Second
	w, err := worker.New(ctx, wo)
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	s.api = httptest.NewServer(w.Handler())
	t.Cleanup(s.api.Close)
	s.out.follow(t, js)
	return s
}

type apiAnswer struct {
	status int
	rec    encoding.Record
	errTyp string
	body   string
}

func (s *tenantStack) call(t *testing.T, method, path, token string, body any) apiAnswer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.api.URL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := apiAnswer{status: resp.StatusCode, body: string(raw)}
	_ = json.Unmarshal(raw, &a.rec)
	var e struct {
		Error struct{ Type string } `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil {
		a.errTyp = e.Error.Type
	}
	return a
}

// Each property's encode runs with its own credentials and settles by its
// own workspace's webhook.
func TestWorkspacesEachSettleWithTheirOwnCredentials(t *testing.T) {
	s := newTenantStack(t)
	ids := map[string]string{}
	for _, ws := range []string{wsAurora, wsBorealis} {
		a := s.call(t, http.MethodPost, "/v1/encodings", opsToken,
			map[string]string{"workspace_id": ws, "acs_encoder_id": uuid.NewString(), "acs_credential_id": uuid.NewString()})
		require.Equal(t, http.StatusAccepted, a.status, a.body)
		require.NotEmpty(t, a.rec.ActionAttemptID)
		ids[ws] = a.rec.EncodingID
	}
	for ws, id := range ids {
		rec := s.out.wait(t, id, func(r encoding.Record) bool { return r.Status.Terminal() })
		require.Equal(t, encoding.StatusIssued, rec.Status, ws)
		require.Equal(t, encoding.ResolvedByWebhook, rec.ResolvedBy, ws)
		require.Equal(t, ws, rec.WorkspaceID)
		require.NotEmpty(t, rec.CardNumber, "fetched with the workspace's credentials")
	}
	aurora, borealis := s.multi.Workspace(wsAurora), s.multi.Workspace(wsBorealis)
	require.Equal(t, 1, aurora.CallsWith(seamsim.PathEncodeCredential, seamsim.AuthAPIKey), "Aurora's own key")
	require.Zero(t, aurora.CallsWith(seamsim.PathEncodeCredential, seamsim.AuthPAT))
	require.Equal(t, 1, borealis.CallsWith(seamsim.PathEncodeCredential, seamsim.AuthPAT), "the PAT naming Borealis")
	require.Zero(t, borealis.CallsWith(seamsim.PathEncodeCredential, seamsim.AuthAPIKey))
	require.Zero(t, s.multi.Unauthorized(), "no call reached Seam with credentials of no workspace")
	require.Equal(t, 1.0, metricOf(t, s.reg, "cardwire_worker_workspace_encodings_resolved_total", "workspace", "Hotel Aurora", "status", "issued"))
	require.Equal(t, 1.0, metricOf(t, s.reg, "cardwire_worker_workspace_encodings_resolved_total", "workspace", "Hotel Borealis", "status", "issued"))
}

// A token reaches only its workspaces, on every route: another
// workspace's encoding is not found (its existence is not revealed),
// registering there is forbidden, listings show only the token's.
func TestWorkspaceTokensAreScoped(t *testing.T) {
	s := newTenantStack(t)
	track := func(ws string) map[string]string {
		return map[string]string{"workspace_id": ws, "acs_encoder_id": uuid.NewString(), "acs_credential_id": uuid.NewString(), "action_attempt_id": uuid.NewString()}
	}
	inA := s.call(t, http.MethodPost, "/v1/encodings", deskToken, track(wsAurora))
	require.Equal(t, http.StatusCreated, inA.status, inA.body)
	inB := s.call(t, http.MethodPost, "/v1/encodings", opsToken, track(wsBorealis))
	require.Equal(t, http.StatusCreated, inB.status, inB.body)
	noWS := track("")
	delete(noWS, "workspace_id")
	b := "/v1/encodings/" + inB.rec.EncodingID

	for _, tc := range []struct {
		name, method, path, token string
		body                      any
		status                    int
		errType                   string
	}{
		{"register in another workspace", http.MethodPost, "/v1/encodings", deskToken, track(wsBorealis), http.StatusForbidden, "forbidden_workspace"},
		{"start in another workspace", http.MethodPost, "/v1/encodings", deskToken, map[string]string{"workspace_id": wsBorealis, "acs_encoder_id": "e", "acs_credential_id": "c"}, http.StatusForbidden, "forbidden_workspace"},
		{"register in an unknown workspace", http.MethodPost, "/v1/encodings", opsToken, track("ws-unknown"), http.StatusBadRequest, "invalid_input"},
		{"no workspace_id, token reaching two", http.MethodPost, "/v1/encodings", opsToken, noWS, http.StatusBadRequest, "invalid_input"},
		{"no workspace_id, token reaching one", http.MethodPost, "/v1/encodings", deskToken, noWS, http.StatusCreated, ""},
		{"get another workspace's", http.MethodGet, b, deskToken, nil, http.StatusNotFound, "encoding_not_found"},
		{"wait on another workspace's", http.MethodGet, b + "?wait=1s", deskToken, nil, http.StatusNotFound, "encoding_not_found"},
		{"stream another workspace's", http.MethodGet, b + "/events", deskToken, nil, http.StatusNotFound, "encoding_not_found"},
		{"cancel another workspace's", http.MethodDelete, b, deskToken, nil, http.StatusNotFound, "encoding_not_found"},
		{"list another workspace's pending", http.MethodGet, "/v1/encodings?status=pending&workspace_id=" + wsBorealis, deskToken, nil, http.StatusForbidden, "forbidden_workspace"},
		{"list another workspace's recent", http.MethodGet, "/v1/encodings?workspace_id=" + wsBorealis, deskToken, nil, http.StatusForbidden, "forbidden_workspace"},
		{"get its own", http.MethodGet, "/v1/encodings/" + inA.rec.EncodingID, deskToken, nil, http.StatusOK, ""},
		{"operators get any", http.MethodGet, b, opsToken, nil, http.StatusOK, ""},
		{"no token", http.MethodGet, b, "", nil, http.StatusUnauthorized, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := s.call(t, tc.method, tc.path, tc.token, tc.body)
			require.Equal(t, tc.status, a.status, a.body)
			require.Equal(t, tc.errType, a.errTyp, a.body)
		})
	}
	// Borealis's encoding was not canceled by the refused DELETE.
	require.Equal(t, encoding.StatusPending, s.call(t, http.MethodGet, b, opsToken, nil).rec.Status)

	list := func(token, query string) []string {
		a := s.call(t, http.MethodGet, "/v1/encodings?"+query, token, nil)
		require.Equal(t, http.StatusOK, a.status, a.body)
		var page struct{ Encodings []encoding.Record }
		require.NoError(t, json.Unmarshal([]byte(a.body), &page))
		var wss []string
		for _, r := range page.Encodings {
			wss = append(wss, r.WorkspaceID)
		}
		return wss
	}
	require.Equal(t, []string{wsAurora, wsAurora}, list(deskToken, "status=pending"), "only the token's workspaces")
	require.ElementsMatch(t, []string{wsAurora, wsAurora, wsBorealis}, list(opsToken, "status=pending"))
}

func metricOf(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	w := &seamWorker{reg: g.(*prometheus.Registry)}
	return w.metric(name, labels...)
}
