package workspaces

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/seam"
)

// Config is one validated configuration of the deployment's workspaces. It
// is immutable: a reload makes a new one.
type Config struct {
	// single is the configuration of the single-workspace variables: one
	// set of secrets and credentials for whatever workspace an event or a
	// request names, and one token (or none) reaching everything.
	single *Workspace
	open   bool // single, without WORKER_API_TOKEN: every request is allowed

	byID   map[string]*Workspace
	ids    []string // in file order
	pat    config.Secret
	tokens map[[32]byte]*token // by the token's SHA-256
	// digest covers every byte read to make c (the file and the secret
	// files it names): a reload with the same digest changes nothing.
	digest [32]byte
}

// Workspace is one configured workspace.
type Workspace struct {
	ID             string
	Name           string
	WebhookSecrets []config.Secret
	// SeamAPIKey is the workspace's own key; empty when it goes through
	// the personal access token, or has no Seam credentials.
	SeamAPIKey config.Secret
}

// Label is the workspace's name in logs and metrics: its configured name,
// else its id.
func (w *Workspace) Label() string {
	if w.Name != "" {
		return w.Name
	}
	return w.ID
}

// Credentials are what a request to Seam for one workspace is
// authorized with: Authorization: Bearer APIKey, plus seam-workspace:
// Workspace for a personal access token.
type Credentials struct {
	APIKey    config.Secret
	Workspace string
}

// Scope is the set of workspaces one API token reaches.
type Scope struct {
	all bool
	ids map[string]bool
}

// Reaches reports whether the scope includes workspace id.
func (s Scope) Reaches(id string) bool { return s.all || s.ids[id] }

// All reports whether the scope reaches every workspace.
func (s Scope) All() bool { return s.all }

func (s Scope) equal(o Scope) bool {
	if s.all != o.all || len(s.ids) != len(o.ids) {
		return false
	}
	for id := range s.ids {
		if !o.ids[id] {
			return false
		}
	}
	return true
}

type token struct {
	sum   [32]byte
	scope Scope
	name  string
	where string // its entry, for errors
}

// SingleOptions are the single-workspace variables.
type SingleOptions struct {
	// WorkspaceID (SEAM_WORKSPACE_ID) is the default workspace of a
	// request, and the seam-workspace header of a personal access token.
	WorkspaceID    string
	WebhookSecrets []string
	// SeamAPIKey (SEAM_API_KEY) is an API key or a personal access token
	// (anything not starting with seam_).
	SeamAPIKey string
	// APIToken (WORKER_API_TOKEN), when set, reaches every workspace;
	// without it the API takes no token.
	APIToken string
}

// Single is the configuration of the single-workspace variables: every
// workspace an event or a request names is served with the same secrets
// and credentials, as before WORKSPACES_FILE existed.
func Single(o SingleOptions) *Config {
	w := &Workspace{ID: o.WorkspaceID, Name: o.WorkspaceID}
	for _, s := range o.WebhookSecrets {
		w.WebhookSecrets = append(w.WebhookSecrets, secret(s))
	}
	c := &Config{single: w, tokens: map[[32]byte]*token{}}
	if !seam.IsPersonalAccessToken(o.SeamAPIKey) {
		w.SeamAPIKey = secret(o.SeamAPIKey)
	} else {
		c.pat = secret(o.SeamAPIKey)
	}
	if o.APIToken == "" {
		c.open = true
	} else {
		sum := sumOf(o.APIToken)
		c.tokens[sum] = &token{sum: sum, scope: Scope{all: true}, name: "WORKER_API_TOKEN"}
	}
	return c
}

// PersonalAccessToken is the file's seam_personal_access_token (or the
// single-workspace SEAM_API_KEY when that is one); empty if none.
func (c *Config) PersonalAccessToken() config.Secret { return c.pat }

// IsSingle reports whether c comes from the single-workspace variables.
func (c *Config) IsSingle() bool { return c.single != nil }

// Workspace returns the configured workspace id. With the single-workspace
// variables every id is served, by the one configuration.
func (c *Config) Workspace(id string) (*Workspace, bool) {
	if c.single != nil {
		return c.single, true
	}
	w, ok := c.byID[id]
	return w, ok
}

// IDs returns the configured workspace ids in file order (none with the
// single-workspace variables). The slice is shared: do not modify it.
func (c *Config) IDs() []string { return c.ids }

// Seam returns the credentials of workspace id's Seam requests: its own
// API key, else the personal access token naming it in seam-workspace.
// It reports false when the workspace has neither (track-only) or is not
// configured.
func (c *Config) Seam(id string) (Credentials, bool) {
	w, ok := c.Workspace(id)
	switch {
	case !ok:
		return Credentials{}, false
	case w.SeamAPIKey != "":
		return Credentials{APIKey: w.SeamAPIKey}, true
	case c.pat != "":
		return Credentials{APIKey: c.pat, Workspace: w.ID}, true
	}
	return Credentials{}, false
}

// Authorize returns the scope of a bearer token. Tokens are kept as
// SHA-256 digests: the presented token is hashed and the digest looked up,
// so the time taken depends on the digest, which tells a guesser nothing
// about any token, and the comparison itself is constant-time. A Config of
// the single-workspace variables without WORKER_API_TOKEN, or a file
// without api_tokens, allows any request (see Open).
func (c *Config) Authorize(bearer string) (Scope, bool) {
	if c.Open() {
		return Scope{all: true}, true
	}
	sum := sumOf(bearer)
	t, ok := c.tokens[sum]
	if !ok || subtle.ConstantTimeCompare(t.sum[:], sum[:]) != 1 {
		return Scope{}, false
	}
	return t.scope, true
}

// Open reports whether the API takes requests without a token: the
// single-workspace variables without WORKER_API_TOKEN, or a file without
// api_tokens.
func (c *Config) Open() bool { return c.open || c.single == nil && len(c.tokens) == 0 }

// Reachable returns the configured workspaces scope reaches, in file
// order; nil means every workspace (the single-workspace variables).
func (c *Config) Reachable(s Scope) []string {
	if c.single != nil {
		return nil
	}
	if s.all {
		return c.ids
	}
	out := make([]string, 0, len(s.ids))
	for _, id := range c.ids {
		if s.ids[id] {
			out = append(out, id)
		}
	}
	return out
}

// Changes describes what differs from old to c, for the reload log line:
// names and ids, never a secret.
func (c *Config) Changes(old *Config) []string {
	var out []string
	for _, id := range c.ids {
		w, prev := c.byID[id], old.byID[id]
		switch {
		case prev == nil:
			out = append(out, "workspace added: "+w.Label()+" ("+id+")")
		case !slices.Equal(w.WebhookSecrets, prev.WebhookSecrets):
			out = append(out, "webhook secrets changed: "+w.Label()+" ("+id+")")
		}
		if prev != nil && (w.SeamAPIKey != prev.SeamAPIKey) {
			out = append(out, "Seam API key changed: "+w.Label()+" ("+id+")")
		}
		if prev != nil && w.Name != prev.Name {
			out = append(out, "workspace renamed: "+prev.Label()+" → "+w.Label()+" ("+id+")")
		}
	}
	for _, id := range old.ids {
		if _, ok := c.byID[id]; !ok {
			out = append(out, "workspace removed: "+old.byID[id].Label()+" ("+id+")")
		}
	}
	if c.pat != old.pat {
		out = append(out, "Seam personal access token changed")
	}
	for sum, t := range c.tokens {
		switch prev, ok := old.tokens[sum]; {
		case !ok:
			out = append(out, "API token added: "+t.label())
		case !prev.scope.equal(t.scope):
			out = append(out, "API token scope changed: "+t.label())
		}
	}
	for sum, t := range old.tokens {
		if _, ok := c.tokens[sum]; !ok {
			out = append(out, "API token revoked: "+t.label())
		}
	}
	slices.Sort(out)
	return out
}

func (t *token) label() string {
	if t.name != "" {
		return t.name
	}
	return t.where
}

func secret(s string) config.Secret { return config.Secret(s) }

func sumOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func parseSum(s string) ([32]byte, bool) {
	var sum [32]byte
	if len(s) != 64 || strings.ToLower(s) != s {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(s)); err != nil {
		return sum, false
	}
	return sum, true
}
