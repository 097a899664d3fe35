package seamsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/cardwire/cardwire/internal/seam"
)

// Route paths.
const (
	PathEncodeCredential    = "/acs/encoders/encode_credential"
	PathEncodeAccess        = "/access_methods/encode"
	PathGetActionAttempt    = "/action_attempts/get"
	PathListAttempts        = "/action_attempts/list"
	PathGetCredential       = "/acs/credentials/get"
	PathListEncoders        = "/acs/encoders/list"
	PathSimulateWillFail    = "/acs/encoders/simulate/next_credential_encode_will_fail"
	PathSimulateWillSucceed = "/acs/encoders/simulate/next_credential_encode_will_succeed"
	PathListEvents          = "/events/list"
	PathCreateWebhook       = "/webhooks/create"
	PathListWebhooks        = "/webhooks/list"
	PathGetWebhook          = "/webhooks/get"
	PathDeleteWebhook       = "/webhooks/delete"
	maxRequestBody          = 1 << 20
	defaultSimulatedError   = "no_credential_on_encoder"
)

// apiError is an error answer: its status and Seam's error envelope.
type apiError struct {
	status     int
	typ, msg   string
	retryAfter time.Duration
}

func invalidInput(format string, a ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "invalid_input", msg: fmt.Sprintf(format, a...)}
}

func unauthorized(msg string) *apiError {
	return &apiError{status: http.StatusUnauthorized, typ: "unauthorized", msg: msg}
}

func notFound(typ, what, id string) *apiError {
	return &apiError{status: http.StatusNotFound, typ: typ, msg: fmt.Sprintf("%s %q not found", what, id)}
}

// request holds the fields of every route's body; each route reads its own.
type request struct {
	AcsEncoderID     string   `json:"acs_encoder_id"`
	AcsCredentialID  string   `json:"acs_credential_id"`
	AccessMethodID   string   `json:"access_method_id"`
	ActionAttemptID  string   `json:"action_attempt_id"`
	ActionAttemptIDs []string `json:"action_attempt_ids"`
	AcsEncoderIDs    []string `json:"acs_encoder_ids"`
	AcsSystemID      string   `json:"acs_system_id"`
	AcsSystemIDs     []string `json:"acs_system_ids"`
	ErrorCode        string   `json:"error_code"`
	// /events/list; a nil Since or Between was not given.
	Since      *string  `json:"since"`
	Between    []string `json:"between"`
	EventType  string   `json:"event_type"`
	EventTypes []string `json:"event_types"` // also /webhooks/create
	Limit      *float64 `json:"limit"`
	Offset     *float64 `json:"unstable_offset"`
	// /webhooks/*
	URL       string `json:"url"`
	WebhookID string `json:"webhook_id"`
}

// envelope is a success answer without its "ok".
type envelope map[string]any

type route func(request) (envelope, *apiError)

func (s *Sim) routes() map[string]route {
	return map[string]route{
		PathEncodeCredential:    func(r request) (envelope, *apiError) { return s.encode(r, false) },
		PathEncodeAccess:        func(r request) (envelope, *apiError) { return s.encode(r, true) },
		PathGetActionAttempt:    s.getAttempt,
		PathListAttempts:        s.listAttempts,
		PathGetCredential:       s.getCredential,
		PathListEncoders:        s.listEncoders,
		PathSimulateWillFail:    s.simulateFail,
		PathSimulateWillSucceed: s.simulateSucceed,
		PathListEvents:          s.listEvents,
		PathCreateWebhook:       s.createWebhook,
		PathListWebhooks:        s.listWebhooks,
		PathGetWebhook:          s.getWebhook,
		PathDeleteWebhook:       s.deleteWebhook,
	}
}

// Handler serves the Seam API routes: POST with a JSON body. Unknown paths
// get a 404 error envelope, other methods a 405 one. Only the Sim's API
// key is accepted (a Sim of a Multi without a key of its own accepts none).
func (s *Sim) Handler() http.Handler {
	routes := s.routes()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var auth Auth
		if s.o.APIKey != "" && r.Header.Get("Authorization") == "Bearer "+s.o.APIKey {
			auth = AuthAPIKey
		}
		s.answer(routes, w, r, auth)
	})
}

// answer serves one request whose credentials are of kind auth ("" when
// they do not reach this workspace).
func (s *Sim) answer(routes map[string]route, w http.ResponseWriter, r *http.Request, auth Auth) {
	reqID := uuid.NewString()
	w.Header().Set("seam-request-id", reqID)
	path := r.URL.Path
	log := s.o.Log.With().Str("path", path).Str("request_id", reqID).Logger()

	env, apiErr := s.serve(routes, w, r, auth)
	if apiErr != nil {
		log.Debug().Int("status", apiErr.status).Str("type", apiErr.typ).Msg("error answer")
		writeError(w, apiErr)
		return
	}
	env["ok"] = true
	log.Debug().Msg("answered")
	writeJSON(w, http.StatusOK, env)
}

// serve runs the checks every request goes through, in the order a real
// deployment meets them (load balancer, rate limiter, auth, router), then
// the route.
func (s *Sim) serve(routes map[string]route, w http.ResponseWriter, r *http.Request, auth Auth) (envelope, *apiError) {
	s.mu.Lock()
	s.calls[r.URL.Path]++
	if auth != "" {
		s.authed[authCall{r.URL.Path, auth}]++
	}
	down := s.down
	var fail *failure
	if q := s.fail[r.URL.Path]; !down && len(q) > 0 {
		fail = &q[0]
		s.fail[r.URL.Path] = q[1:]
	}
	s.mu.Unlock()

	switch {
	case down:
		return nil, &apiError{status: http.StatusServiceUnavailable, typ: "service_unavailable", msg: "Seam is unavailable (simulated outage)"}
	case fail != nil:
		return nil, &apiError{status: fail.status, typ: errorTypeFor(fail.status), msg: "simulated failure", retryAfter: fail.retryAfter}
	case auth == "":
		return nil, unauthorized("Unauthorized")
	}
	rt, ok := routes[r.URL.Path]
	if !ok {
		return nil, &apiError{status: http.StatusNotFound, typ: "not_found", msg: "no route " + r.URL.Path}
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, &apiError{status: http.StatusMethodNotAllowed, typ: "method_not_allowed", msg: "use POST"}
	}
	var req request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	// An empty body stands for {}.
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		return nil, invalidInput("the body must be a JSON object: %v", err)
	}
	return rt(req)
}

// errorTypeFor names the error envelope of a FailNext status.
func errorTypeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_input"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusTooManyRequests:
		return "rate_limit_exceeded"
	case http.StatusInternalServerError:
		return "internal_server_error"
	case http.StatusBadGateway:
		return "bad_gateway"
	case http.StatusServiceUnavailable:
		return "service_unavailable"
	case http.StatusGatewayTimeout:
		return "gateway_timeout"
	}
	return "http_" + strconv.Itoa(status)
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.retryAfter.Seconds()))))
	}
	writeJSON(w, e.status, map[string]any{
		"error": map[string]string{"type": e.typ, "message": e.msg},
		"ok":    false,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"type":"internal_server_error","message":"encoding the answer failed"},"ok":false}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// lookups: with mu held. Unknown ids are a 404 when Strict, else created.

func (s *Sim) encoderLocked(id string) (*encoder, *apiError) {
	if e, ok := s.encoders[id]; ok {
		return e, nil
	}
	if s.o.Strict {
		return nil, notFound("acs_encoder_not_found", "acs_encoder", id)
	}
	return s.addEncoderLocked(id), nil
}

func (s *Sim) credentialLocked(id string) (*credential, *apiError) {
	if c, ok := s.creds[id]; ok {
		return c, nil
	}
	if s.o.Strict {
		return nil, notFound("acs_credential_not_found", "acs_credential", id)
	}
	return s.addCredentialLocked(id), nil
}

func (s *Sim) methodLocked(id string) (*accessMethod, *apiError) {
	if m, ok := s.methods[id]; ok {
		return m, nil
	}
	if s.o.Strict {
		return nil, notFound("access_method_not_found", "access_method", id)
	}
	return s.addMethodLocked(id), nil
}

// plan is what an accepted encode will do.
type plan struct {
	knobs
	attemptID string
	cred      *credential
	method    *accessMethod // nil: a plain credential encode
	fail      string        // error type; "" = succeed
}

// encode serves both encode routes. accessRoute is /access_methods/encode,
// which needs access_method_id; encode_credential takes exactly one of
// acs_credential_id and access_method_id.
func (s *Sim) encode(r request, accessRoute bool) (envelope, *apiError) {
	switch {
	case r.AcsEncoderID == "":
		return nil, invalidInput("acs_encoder_id is required")
	case accessRoute && r.AccessMethodID == "":
		return nil, invalidInput("access_method_id is required")
	case !accessRoute && (r.AcsCredentialID == "") == (r.AccessMethodID == ""):
		return nil, invalidInput("provide exactly one of acs_credential_id and access_method_id")
	}
	s.mu.Lock()
	enc, apiErr := s.encoderLocked(r.AcsEncoderID)
	if apiErr != nil {
		s.mu.Unlock()
		return nil, apiErr
	}
	p := plan{knobs: s.next, attemptID: uuid.NewString()}
	if r.AccessMethodID != "" {
		p.method, apiErr = s.methodLocked(r.AccessMethodID)
		if apiErr == nil {
			p.cred = p.method.cred
		}
	} else {
		p.cred, apiErr = s.credentialLocked(r.AcsCredentialID)
	}
	if apiErr != nil {
		s.mu.Unlock()
		return nil, apiErr
	}
	// The next encode takes every knob set for it.
	p.fail, enc.failNext = enc.failNext, ""
	s.next = knobs{}
	a := &seam.ActionAttempt{ActionAttemptID: p.attemptID, ActionType: seam.ActionTypeEncodeCredential, Status: seam.AttemptPending}
	s.attempts[a.ActionAttemptID] = a
	answer := *a
	s.mu.Unlock()

	s.o.Log.Info().Str("action_attempt_id", p.attemptID).Str("acs_encoder_id", r.AcsEncoderID).
		Str("acs_credential_id", p.cred.id).Str("access_method_id", r.AccessMethodID).
		Bool("hold", p.hold).Str("will_fail", p.fail).Msg("encode accepted")
	switch {
	case p.hold:
	case p.early:
		s.resolve(p)
	default:
		s.after(s.o.EncodeDelay, func() { s.resolve(p) })
	}
	return envelope{"action_attempt": answer}, nil
}

// resolve ends an attempt: an error (no event, as with Seam) or success,
// which issues the credential, logs the event and sends it to every webhook
// that wants it, as the knobs say.
func (s *Sim) resolve(p plan) {
	s.mu.Lock()
	a := s.attempts[p.attemptID]
	now := s.now()
	if p.fail != "" {
		a.Status = seam.AttemptError
		a.Error = &seam.ActionAttemptError{Type: p.fail, Message: failMessage(p.fail)}
		s.mu.Unlock()
		s.o.Log.Info().Str("action_attempt_id", p.attemptID).Str("error_type", p.fail).Msg("encode failed")
		return
	}
	c := p.cred
	reissue := c.issued
	if p.method != nil {
		reissue = p.method.issued
		p.method.issued = true
	}
	card := fmt.Sprintf("%08d", rand.N(100_000_000))
	c.issued, c.issuedAt, c.cardNumber = true, &now, &card
	result, _ := json.Marshal(s.credentialWire(c))
	a.Status, a.Result = seam.AttemptSuccess, result
	ev := event{
		EventID: uuid.NewString(), WorkspaceID: s.o.WorkspaceID, CreatedAt: now, OccurredAt: now,
		AcsSystemID: s.systemID, ConnectedAccountID: s.connectedAccountID,
	}
	verb := "issued"
	if reissue {
		verb = "reissued"
	}
	if p.method != nil {
		ev.EventType = "access_method." + verb
		ev.AccessMethodID, ev.AccessGrantIDs = p.method.id, []string{p.method.grantID}
	} else {
		ev.EventType = "acs_credential." + verb
		ev.AcsCredentialID = c.id
	}
	body, _ := json.Marshal(ev)
	// The log and every webhook share these bytes: /events/list answers
	// exactly what was (or would have been) delivered.
	s.events = append(s.events, loggedEvent{createdAt: ev.CreatedAt, eventType: ev.EventType, body: body})
	var to []*hook
	for _, h := range s.hooks {
		if h.wants(ev.EventType) {
			to = append(to, h)
		}
	}
	s.mu.Unlock()

	log := s.o.Log.With().Str("action_attempt_id", p.attemptID).Str("event_id", ev.EventID).Str("event_type", ev.EventType).Logger()
	log.Info().Str("card_number", card).Msg("encode succeeded")
	if len(to) == 0 || p.drop {
		log.Info().Bool("dropped", p.drop).Msg("no webhook")
		return
	}
	n := 1
	if p.duplicate {
		n = 2
	}
	for _, h := range to {
		for range n {
			m := message{id: newMessageID(), hook: h, body: body, eventID: ev.EventID, eventType: ev.EventType}
			if p.early {
				s.send(m, 0)
			} else {
				s.after(p.delay, func() { s.send(m, 0) })
			}
		}
	}
}

func failMessage(typ string) string {
	switch typ {
	case "no_credential_on_encoder":
		return "No credential on the encoder."
	case "encoding_interrupted":
		return "The card was removed from the encoder before writing was complete."
	case "uncategorized_error":
		return "Failed to encode the credential."
	case "action_attempt_expired":
		return "The action attempt expired."
	}
	return "Simulated encode failure: " + typ
}

func (s *Sim) getAttempt(r request) (envelope, *apiError) {
	if r.ActionAttemptID == "" {
		return nil, invalidInput("action_attempt_id is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.attempts[r.ActionAttemptID]
	if !ok {
		return nil, notFound("action_attempt_not_found", "action_attempt", r.ActionAttemptID)
	}
	return envelope{"action_attempt": *a}, nil
}

// listAttempts returns the known attempts among action_attempt_ids, in that
// order, on one page.
func (s *Sim) listAttempts(r request) (envelope, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []seam.ActionAttempt{}
	for _, id := range r.ActionAttemptIDs {
		if a, ok := s.attempts[id]; ok {
			out = append(out, *a)
		}
	}
	return envelope{"action_attempts": out, "pagination": lastPage}, nil
}

var lastPage = map[string]any{"has_next_page": false, "next_page_cursor": nil, "next_page_url": nil}

func (s *Sim) getCredential(r request) (envelope, *apiError) {
	if r.AcsCredentialID == "" {
		return nil, invalidInput("acs_credential_id is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, apiErr := s.credentialLocked(r.AcsCredentialID)
	if apiErr != nil {
		return nil, apiErr
	}
	return envelope{"acs_credential": s.credentialWire(c)}, nil
}

// listEncoders selects by exactly one of acs_encoder_ids, acs_system_id and
// acs_system_ids; every encoder is in the Sim's one access system.
func (s *Sim) listEncoders(r request) (envelope, *apiError) {
	given := 0
	for _, set := range []bool{r.AcsEncoderIDs != nil, r.AcsSystemID != "", r.AcsSystemIDs != nil} {
		if set {
			given++
		}
	}
	if given != 1 {
		return nil, invalidInput("provide exactly one of acs_system_id, acs_system_ids and acs_encoder_ids")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []encoderWire{}
	switch {
	case r.AcsEncoderIDs != nil:
		for _, id := range r.AcsEncoderIDs {
			if e, ok := s.encoders[id]; ok || !s.o.Strict {
				if !ok {
					e = s.addEncoderLocked(id)
				}
				out = append(out, s.encoderWire(e))
			}
		}
	case r.AcsSystemID == s.systemID || (r.AcsSystemIDs != nil && contains(r.AcsSystemIDs, s.systemID)):
		for _, id := range s.encOrder {
			out = append(out, s.encoderWire(s.encoders[id]))
		}
	}
	return envelope{"acs_encoders": out, "pagination": lastPage}, nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// simulateFail makes the next encode on the encoder fail with error_code
// (default no_credential_on_encoder). Codes outside Seam's enum are kept
// verbatim, to test unknown error types; acs_credential_id is accepted and
// ignored.
func (s *Sim) simulateFail(r request) (envelope, *apiError) {
	if r.AcsEncoderID == "" {
		return nil, invalidInput("acs_encoder_id is required")
	}
	code := strings.TrimSpace(r.ErrorCode)
	if code == "" {
		code = defaultSimulatedError
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, apiErr := s.encoderLocked(r.AcsEncoderID)
	if apiErr != nil {
		return nil, apiErr
	}
	e.failNext = code
	return envelope{}, nil
}

// simulateSucceed undoes simulateFail for the encoder's next encode.
func (s *Sim) simulateSucceed(r request) (envelope, *apiError) {
	if r.AcsEncoderID == "" {
		return nil, invalidInput("acs_encoder_id is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, apiErr := s.encoderLocked(r.AcsEncoderID)
	if apiErr != nil {
		return nil, apiErr
	}
	e.failNext = ""
	return envelope{}, nil
}

// Wire shapes, after seam-api-facts.json (the fields Seam requires, plus the
// encode-related ones).

type wireWarning struct {
	CreatedAt   time.Time `json:"created_at"`
	WarningCode string    `json:"warning_code"`
	Message     string    `json:"message"`
}

type credentialWire struct {
	AcsCredentialID         string        `json:"acs_credential_id"`
	AcsSystemID             string        `json:"acs_system_id"`
	ConnectedAccountID      string        `json:"connected_account_id"`
	WorkspaceID             string        `json:"workspace_id"`
	DisplayName             string        `json:"display_name"`
	AccessMethod            string        `json:"access_method"`
	ExternalType            string        `json:"external_type"`
	ExternalTypeDisplayName string        `json:"external_type_display_name"`
	IsManaged               bool          `json:"is_managed"`
	IsIssued                bool          `json:"is_issued"`
	IssuedAt                *time.Time    `json:"issued_at"`
	CardNumber              *string       `json:"card_number"`
	CreatedAt               time.Time     `json:"created_at"`
	Errors                  []struct{}    `json:"errors"`
	Warnings                []wireWarning `json:"warnings"`
}

func (s *Sim) credentialWire(c *credential) credentialWire {
	w := credentialWire{
		AcsCredentialID: c.id, AcsSystemID: s.systemID, ConnectedAccountID: s.connectedAccountID,
		WorkspaceID: s.o.WorkspaceID, DisplayName: "Card " + c.id, AccessMethod: "card",
		ExternalType: "visionline_card", ExternalTypeDisplayName: "Visionline Card", IsManaged: true,
		IsIssued: c.issued, IssuedAt: c.issuedAt, CardNumber: c.cardNumber, CreatedAt: c.createdAt,
		Errors: []struct{}{}, Warnings: []wireWarning{},
	}
	if !c.issued {
		w.Warnings = append(w.Warnings, wireWarning{CreatedAt: c.createdAt, WarningCode: "waiting_to_be_issued", Message: "Card is waiting to be encoded."})
	}
	return w
}

type encoderWire struct {
	AcsEncoderID       string     `json:"acs_encoder_id"`
	AcsSystemID        string     `json:"acs_system_id"`
	ConnectedAccountID string     `json:"connected_account_id"`
	WorkspaceID        string     `json:"workspace_id"`
	DisplayName        string     `json:"display_name"`
	CreatedAt          time.Time  `json:"created_at"`
	Errors             []struct{} `json:"errors"`
}

func (s *Sim) encoderWire(e *encoder) encoderWire {
	return encoderWire{
		AcsEncoderID: e.id, AcsSystemID: s.systemID, ConnectedAccountID: s.connectedAccountID,
		WorkspaceID: s.o.WorkspaceID, DisplayName: "Encoder " + e.id, CreatedAt: e.createdAt, Errors: []struct{}{},
	}
}

// event is the webhook body: Seam's bare event object.
type event struct {
	EventID            string    `json:"event_id"`
	EventType          string    `json:"event_type"`
	WorkspaceID        string    `json:"workspace_id"`
	CreatedAt          time.Time `json:"created_at"`
	OccurredAt         time.Time `json:"occurred_at"`
	AcsCredentialID    string    `json:"acs_credential_id,omitempty"`
	AccessMethodID     string    `json:"access_method_id,omitempty"`
	AccessGrantIDs     []string  `json:"access_grant_ids,omitempty"`
	AcsSystemID        string    `json:"acs_system_id"`
	ConnectedAccountID string    `json:"connected_account_id"`
}
