package events

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// maxWebhookIDLen bounds the webhook id, which becomes a header and the
// JetStream message id. Svix ids are about 30 bytes.
const maxWebhookIDLen = 256

// Delivery is what the signature headers of one verified webhook say.
type Delivery struct {
	// ID is the svix-id (or webhook-id): the same on every retry.
	ID string
	// Timestamp is the raw svix-timestamp (Unix seconds).
	Timestamp string
	// Workspace is the label of the workspace whose secret verified it.
	Workspace string
}

// Verifier checks Svix signatures. Built by NewVerifier, it checks every
// event against one set of secrets, whatever workspace the event names
// (the single-workspace variables); built by NewWorkspaceVerifier, it
// checks an event only against the secrets of the workspace its body
// names, so that one workspace's secret cannot sign another's events, and
// the cost of a request does not grow with the number of workspaces.
// Several secrets per set let a rotation never reject a delivery signed
// with either one.
type Verifier struct {
	keys      atomic.Pointer[keyring]
	tolerance time.Duration
	now       func() time.Time
}

type keyring struct {
	any         []*svix.Webhook          // NewVerifier
	byWorkspace map[string]workspaceRing // NewWorkspaceVerifier
}

type workspaceRing struct {
	label string
	hooks []*svix.Webhook
}

// WorkspaceSecrets are the webhook secrets of one workspace, and the label
// its events are counted under (its configured name, or its id).
type WorkspaceSecrets struct {
	Label   string
	Secrets []string
}

// ErrNoSecrets is returned by NewVerifier without any secret.
var ErrNoSecrets = errors.New("no webhook secret")

// SingleLabel is the workspace label of events verified by a NewVerifier
// Verifier, which knows no workspaces.
const SingleLabel = "default"

// NewVerifier accepts whsec_-prefixed (or bare) base64 secrets, any of
// which verifies an event of any workspace. It fails when there is none or
// one is not valid base64 or empty; errors name the secret's position,
// never its value.
func NewVerifier(secrets []string, tolerance time.Duration) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, ErrNoSecrets
	}
	hooks, err := parseSecrets(secrets)
	if err != nil {
		return nil, err
	}
	v, err := newVerifier(tolerance)
	if err != nil {
		return nil, err
	}
	v.keys.Store(&keyring{any: hooks})
	return v, nil
}

// NewWorkspaceVerifier verifies an event only with the secrets of the
// workspace its body names (a key of workspaces).
func NewWorkspaceVerifier(workspaces map[string]WorkspaceSecrets, tolerance time.Duration) (*Verifier, error) {
	v, err := newVerifier(tolerance)
	if err != nil {
		return nil, err
	}
	if err := v.SetWorkspaces(workspaces); err != nil {
		return nil, err
	}
	return v, nil
}

// SetWorkspaces replaces the workspaces and their secrets of a
// NewWorkspaceVerifier Verifier at once (a reload of WORKSPACES_FILE);
// requests being verified finish with the set they started with. On an
// error nothing changes.
func (v *Verifier) SetWorkspaces(workspaces map[string]WorkspaceSecrets) error {
	if len(workspaces) == 0 {
		return ErrNoSecrets
	}
	if k := v.keys.Load(); k != nil && k.any != nil {
		return errors.New("a Verifier of NewVerifier knows no workspaces")
	}
	ring := &keyring{byWorkspace: make(map[string]workspaceRing, len(workspaces))}
	for id, ws := range workspaces {
		if len(ws.Secrets) == 0 {
			return fmt.Errorf("workspace %s: %w", ws.Label, ErrNoSecrets)
		}
		hooks, err := parseSecrets(ws.Secrets)
		if err != nil {
			return fmt.Errorf("workspace %s: %w", ws.Label, err)
		}
		ring.byWorkspace[id] = workspaceRing{label: ws.Label, hooks: hooks}
	}
	v.keys.Store(ring)
	return nil
}

func newVerifier(tolerance time.Duration) (*Verifier, error) {
	if tolerance <= 0 {
		return nil, errors.New("signature tolerance must be positive")
	}
	return &Verifier{tolerance: tolerance, now: time.Now}, nil
}

func parseSecrets(secrets []string) ([]*svix.Webhook, error) {
	hooks := make([]*svix.Webhook, 0, len(secrets))
	for i, s := range secrets {
		wh, err := svix.NewWebhook(s)
		if err != nil || strings.TrimPrefix(s, "whsec_") == "" {
			return nil, fmt.Errorf("webhook secret #%d is not a valid whsec_ base64 secret", i+1)
		}
		hooks = append(hooks, wh)
	}
	return hooks, nil
}

// Verify checks the signature headers and body against the secrets of
// workspaceID (the workspace_id the body claims, not yet verified: it
// only picks the secrets to try), or against every secret of a
// NewVerifier Verifier. It fails with a *SignatureError. The headers are read the way the svix
// library reads them: the svix-* set if complete, else the webhook-* set.
//
// The timestamp is checked here (rather than by the library) so that the
// tolerance is configurable and each failure has its own reason; the HMAC
// comparison is the library's.
func (v *Verifier) Verify(body []byte, h http.Header, workspaceID string) (Delivery, error) {
	// Canonical keys: http.Header.Get allocates for any other spelling.
	id, ts, sig := h.Get("Svix-Id"), h.Get("Svix-Timestamp"), h.Get("Svix-Signature")
	if id == "" || ts == "" || sig == "" {
		id, ts, sig = h.Get("Webhook-Id"), h.Get("Webhook-Timestamp"), h.Get("Webhook-Signature")
		if id == "" || ts == "" || sig == "" {
			return Delivery{}, &SignatureError{Reason: ReasonMissingHeaders}
		}
	}
	if len(id) > maxWebhookIDLen {
		return Delivery{}, &SignatureError{Reason: ReasonInvalidHeaders}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Delivery{}, &SignatureError{Reason: ReasonInvalidHeaders}
	}
	now := v.now()
	switch sent := time.Unix(sec, 0); {
	case now.Sub(sent) > v.tolerance:
		return Delivery{}, &SignatureError{Reason: ReasonTimestampTooOld}
	case sent.Sub(now) > v.tolerance:
		return Delivery{}, &SignatureError{Reason: ReasonTimestampTooNew}
	}
	keys := v.keys.Load()
	hooks, label := keys.any, SingleLabel
	if keys.byWorkspace != nil {
		ws, ok := keys.byWorkspace[workspaceID]
		if !ok {
			return Delivery{}, &SignatureError{Reason: ReasonUnknownWorkspace}
		}
		hooks, label = ws.hooks, ws.label
	}
	for _, wh := range hooks {
		if wh.VerifyIgnoringTimestamp(body, h) == nil {
			return Delivery{ID: id, Timestamp: ts, Workspace: label}, nil
		}
	}
	return Delivery{}, &SignatureError{Reason: ReasonNoMatchingSecret}
}
