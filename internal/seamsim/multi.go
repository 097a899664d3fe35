package seamsim

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
)

// MultiOptions configure a Multi: several workspaces behind one Seam API,
// as one Seam account with a property per workspace.
type MultiOptions struct {
	// Workspaces are the simulated workspaces; at least one.
	Workspaces []WorkspaceOptions
	// PersonalAccessToken, when set, reaches every workspace: a request
	// carries "Authorization: Bearer <token>" and "seam-workspace: <id>".
	PersonalAccessToken string
	// WebhookURL is where every workspace POSTs its webhooks; empty means
	// none.
	WebhookURL string
	// EncodeDelay, RetryDelays, Strict, Log and Now are as in Options, for
	// every workspace.
	EncodeDelay time.Duration
	RetryDelays []time.Duration
	Strict      bool
	Log         zerolog.Logger
	Now         func() time.Time
}

// WorkspaceOptions are one workspace of a Multi.
type WorkspaceOptions struct {
	// WorkspaceID is required: the personal access token's seam-workspace
	// header names it, and it is the workspace_id of the workspace's
	// objects and webhooks.
	WorkspaceID string
	// Name labels the workspace's log lines.
	Name string
	// APIKey is the workspace's own key; without it the workspace is
	// reached through MultiOptions.PersonalAccessToken only.
	APIKey string
	// WebhookSecret (whsec_…) signs the workspace's webhooks; required
	// with MultiOptions.WebhookURL.
	WebhookSecret string
}

// Validate reports the first option that cannot work.
func (o MultiOptions) Validate() error {
	if len(o.Workspaces) == 0 {
		return errors.New("MultiOptions.Workspaces must have at least one workspace")
	}
	if err := validateShared("MultiOptions", o.EncodeDelay, o.RetryDelays, o.WebhookURL); err != nil {
		return err
	}
	ids := map[string]bool{}
	keys := map[string]string{} // API key → its workspace
	for i, w := range o.Workspaces {
		where := fmt.Sprintf("MultiOptions.Workspaces[%d]", i)
		if w.WorkspaceID != "" {
			where += " (" + w.WorkspaceID + ")"
		}
		switch {
		case w.WorkspaceID == "":
			return fmt.Errorf("%s: WorkspaceID must be set", where)
		case ids[w.WorkspaceID]:
			return fmt.Errorf("%s: WorkspaceID is configured twice", where)
		case w.APIKey == "" && o.PersonalAccessToken == "":
			return fmt.Errorf("%s: set its APIKey or MultiOptions.PersonalAccessToken, else nothing reaches the workspace", where)
		case w.APIKey != "" && w.APIKey == o.PersonalAccessToken:
			return fmt.Errorf("%s: APIKey must differ from MultiOptions.PersonalAccessToken", where)
		case w.APIKey != "" && keys[w.APIKey] != "":
			return fmt.Errorf("%s: APIKey is also the key of workspace %s; a key is scoped to one workspace", where, keys[w.APIKey])
		case o.WebhookURL != "" && w.WebhookSecret == "":
			return fmt.Errorf("%s: WebhookSecret must be set when MultiOptions.WebhookURL is", where)
		}
		if err := validateSecret(where+": WebhookSecret", w.WebhookSecret); err != nil {
			return err
		}
		ids[w.WorkspaceID] = true
		if w.APIKey != "" {
			keys[w.APIKey] = w.WorkspaceID
		}
	}
	return nil
}

// Multi is a fake Seam serving several workspaces, each a Sim with its own
// encoders, credentials, attempts, knobs and webhook secret. Its Handler
// routes every request by its credentials: a workspace's API key reaches
// that workspace only (a seam-workspace header is ignored), and the
// personal access token reaches the workspace its seam-workspace header
// names. Anything else is Seam's 401 (type "unauthorized").
type Multi struct {
	o            MultiOptions
	ids          []string
	byID         map[string]*member
	byKey        map[string]*member
	unauthorized atomic.Int64
}

type member struct {
	sim    *Sim
	routes map[string]route
}

// NewMulti validates o and returns a Multi with one empty Sim per
// workspace. Close it to stop every workspace's timers and deliveries.
func NewMulti(o MultiOptions) (*Multi, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	m := &Multi{o: o, byID: map[string]*member{}, byKey: map[string]*member{}}
	for _, w := range o.Workspaces {
		log := o.Log.With().Str("workspace_id", w.WorkspaceID).Logger()
		if w.Name != "" {
			log = log.With().Str("workspace", w.Name).Logger()
		}
		s := newSim(Options{
			APIKey: w.APIKey, WorkspaceID: w.WorkspaceID, WebhookURL: o.WebhookURL, WebhookSecret: w.WebhookSecret,
			EncodeDelay: o.EncodeDelay, RetryDelays: o.RetryDelays, Strict: o.Strict, Log: log, Now: o.Now,
		})
		mb := &member{sim: s, routes: s.routes()}
		m.ids = append(m.ids, w.WorkspaceID)
		m.byID[w.WorkspaceID] = mb
		if w.APIKey != "" {
			m.byKey[w.APIKey] = mb
		}
	}
	return m, nil
}

// Workspace returns the Sim of workspace id (for its knobs and counts), or
// nil when it is not simulated.
func (m *Multi) Workspace(id string) *Sim {
	if mb, ok := m.byID[id]; ok {
		return mb.sim
	}
	return nil
}

// IDs returns the workspace ids in MultiOptions order. The slice is shared:
// do not modify it.
func (m *Multi) IDs() []string { return m.ids }

// Unauthorized is how many requests were refused because their
// credentials reached no workspace.
func (m *Multi) Unauthorized() int { return int(m.unauthorized.Load()) }

// Close closes every workspace's Sim.
func (m *Multi) Close() {
	for _, id := range m.ids {
		m.byID[id].sim.Close()
	}
}

// Handler serves the Seam API routes of every workspace.
func (m *Multi) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mb, auth, apiErr := m.authenticate(r)
		if apiErr != nil {
			m.unauthorized.Add(1)
			reqID := uuid.NewString()
			w.Header().Set("seam-request-id", reqID)
			m.o.Log.Debug().Str("path", r.URL.Path).Str("request_id", reqID).Str("type", apiErr.typ).
				Str("reason", apiErr.msg).Msg("error answer")
			writeError(w, apiErr)
			return
		}
		mb.sim.answer(mb.routes, w, r, auth)
	})
}

// authenticate finds the workspace the request's credentials reach.
func (m *Multi) authenticate(r *http.Request) (*member, Auth, *apiError) {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || bearer == "" {
		return nil, "", unauthorized("Unauthorized")
	}
	if mb, ok := m.byKey[bearer]; ok {
		return mb, AuthAPIKey, nil
	}
	if m.o.PersonalAccessToken == "" || bearer != m.o.PersonalAccessToken {
		return nil, "", unauthorized("Unauthorized")
	}
	id := r.Header.Get("seam-workspace")
	if id == "" {
		return nil, "", unauthorized("A personal access token needs the seam-workspace header")
	}
	mb, ok := m.byID[id]
	if !ok {
		return nil, "", unauthorized(fmt.Sprintf("The personal access token has no access to workspace %q", id))
	}
	return mb, AuthPAT, nil
}
