package workspaces

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/streams"
)

// File is the shape of WORKSPACES_FILE. Every secret may instead be given
// as the path of a file holding it (the *_file fields; relative paths are
// relative to WORKSPACES_FILE), so that a Kubernetes Secret can hold each
// one under its own key.
type File struct {
	Workspaces              []WorkspaceEntry `json:"workspaces"`
	PersonalAccessToken     string           `json:"seam_personal_access_token,omitempty"`
	PersonalAccessTokenFile string           `json:"seam_personal_access_token_file,omitempty"`
	APITokens               []TokenEntry     `json:"api_tokens,omitempty"`
}

// WorkspaceEntry is one Seam workspace (usually one property).
type WorkspaceEntry struct {
	WorkspaceID string `json:"workspace_id"`
	// Name labels the workspace in logs and metrics; the id when empty.
	Name string `json:"name,omitempty"`
	// WebhookSecrets are the whsec_… secrets of the workspace's webhook
	// endpoints (two during a rotation); the file holds one per line.
	WebhookSecrets     []string `json:"webhook_secrets,omitempty"`
	WebhookSecretsFile string   `json:"webhook_secrets_file,omitempty"`
	// SeamAPIKey (seam_…) is scoped to this workspace; without it the
	// file's personal access token is used, and without both the
	// workspace is track-only.
	SeamAPIKey     string `json:"seam_api_key,omitempty"`
	SeamAPIKeyFile string `json:"seam_api_key_file,omitempty"`
}

// TokenEntry is one API token and the workspaces it reaches ("*": all).
// Exactly one of Token, TokenFile and TokenSHA256 (lowercase hex, as
// sha256sum prints it) is set; with TokenSHA256 the plain token lives only
// with its user.
type TokenEntry struct {
	// Name says whose token it is, in logs (never the token).
	Name        string   `json:"name,omitempty"`
	Token       string   `json:"token,omitempty"`
	TokenFile   string   `json:"token_file,omitempty"`
	TokenSHA256 string   `json:"token_sha256,omitempty"`
	Workspaces  []string `json:"workspaces"`
}

// Everything is a reserved workspace name in a token's list: every
// configured workspace, for operators.
const Everything = "*"

// ErrInvalid wraps every error of a WORKSPACES_FILE that does not parse or
// validate.
var ErrInvalid = errors.New("invalid WORKSPACES_FILE")

// Parse reads a WORKSPACES_FILE strictly: an unknown or duplicate field
// is an error, as is anything Validate refuses. readFile reads the *_file
// secrets, relative to dir. Errors name the entry, never a secret.
func Parse(data []byte, dir string, readFile func(string) ([]byte, error)) (*Config, error) {
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	h := sha256.New()
	h.Write(data)
	c, err := f.resolve(dir, func(path string) ([]byte, error) {
		b, err := readFile(path)
		h.Write([]byte{0})
		h.Write(b)
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	h.Sum(c.digest[:0])
	return c, nil
}

// resolve reads the *_file secrets and validates the whole file.
func (f File) resolve(dir string, readFile func(string) ([]byte, error)) (*Config, error) {
	read := func(what, path string) (string, error) {
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		b, err := readFile(path)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		return string(bytes.TrimSpace(b)), nil
	}
	one := func(what, value, path string) (string, error) {
		switch {
		case value != "" && path != "":
			return "", fmt.Errorf("%s: at most one of the value and its _file may be set", what)
		case path != "":
			return read(what+"_file", path)
		}
		return strings.TrimSpace(value), nil
	}
	if len(f.Workspaces) == 0 {
		return nil, errors.New("workspaces: at least one workspace is required")
	}
	c := &Config{byID: make(map[string]*Workspace, len(f.Workspaces)), tokens: map[[32]byte]*token{}}
	pat, err := one("seam_personal_access_token", f.PersonalAccessToken, f.PersonalAccessTokenFile)
	if err != nil {
		return nil, err
	}
	if pat != "" && !seam.IsPersonalAccessToken(pat) {
		return nil, errors.New("seam_personal_access_token is an API key (seam_…, scoped to one workspace), not a personal access token (seam_at…): give it to its workspace as seam_api_key")
	}
	c.pat = secret(pat)
	for i, e := range f.Workspaces {
		where := fmt.Sprintf("workspaces[%d]", i)
		if e.WorkspaceID != "" {
			where += " (" + e.WorkspaceID + ")"
		}
		if !streams.ValidToken(e.WorkspaceID) {
			return nil, fmt.Errorf("%s: workspace_id must be a Seam workspace id (letters, digits, - and _)", where)
		}
		if _, dup := c.byID[e.WorkspaceID]; dup {
			return nil, fmt.Errorf("%s: workspace_id is configured twice", where)
		}
		w := &Workspace{ID: e.WorkspaceID, Name: strings.TrimSpace(e.Name)}
		secrets := e.WebhookSecrets
		switch {
		case len(secrets) > 0 && e.WebhookSecretsFile != "":
			return nil, fmt.Errorf("%s: at most one of webhook_secrets and webhook_secrets_file may be set", where)
		case e.WebhookSecretsFile != "":
			text, err := read(where+": webhook_secrets_file", e.WebhookSecretsFile)
			if err != nil {
				return nil, err
			}
			secrets = nil
			for line := range strings.Lines(text) {
				for part := range strings.SplitSeq(line, ",") {
					secrets = append(secrets, part)
				}
			}
		}
		for j, s := range secrets {
			s = strings.TrimSpace(s)
			if s == "" {
				if e.WebhookSecretsFile != "" {
					continue
				}
				return nil, fmt.Errorf("%s: webhook_secrets[%d] is empty", where, j)
			}
			w.WebhookSecrets = append(w.WebhookSecrets, secret(s))
		}
		if len(w.WebhookSecrets) == 0 {
			return nil, fmt.Errorf("%s: webhook_secrets is empty: the workspace's events could not be verified", where)
		}
		key, err := one(where+": seam_api_key", e.SeamAPIKey, e.SeamAPIKeyFile)
		if err != nil {
			return nil, err
		}
		if key != "" && seam.IsPersonalAccessToken(key) {
			return nil, fmt.Errorf("%s: seam_api_key is a personal access token (seam_at…): put it in seam_personal_access_token, which reaches every workspace that has no seam_api_key", where)
		}
		w.SeamAPIKey = secret(key)
		c.byID[w.ID] = w
		c.ids = append(c.ids, w.ID)
	}
	for i, e := range f.APITokens {
		where := fmt.Sprintf("api_tokens[%d]", i)
		if e.Name != "" {
			where += " (" + e.Name + ")"
		}
		t, err := c.resolveToken(where, e, one)
		if err != nil {
			return nil, err
		}
		if prev, dup := c.tokens[t.sum]; dup {
			return nil, fmt.Errorf("%s: the same token is also %s", where, prev.where)
		}
		c.tokens[t.sum] = t
	}
	return c, nil
}

func (c *Config) resolveToken(where string, e TokenEntry, one func(what, value, path string) (string, error)) (*token, error) {
	t := &token{where: where, name: e.Name}
	set := 0
	for _, v := range []string{e.Token, e.TokenFile, e.TokenSHA256} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("%s: exactly one of token, token_file and token_sha256 must be set", where)
	}
	if e.TokenSHA256 != "" {
		sum, ok := parseSum(e.TokenSHA256)
		if !ok {
			return nil, fmt.Errorf("%s: token_sha256 must be 64 lowercase hex digits, as sha256sum prints them", where)
		}
		t.sum = sum
	} else {
		plain, err := one(where+": token", e.Token, e.TokenFile)
		if err != nil {
			return nil, err
		}
		if len(plain) < minTokenLen {
			return nil, fmt.Errorf("%s: a token must be at least %d characters", where, minTokenLen)
		}
		t.sum = sumOf(plain)
	}
	if len(e.Workspaces) == 0 {
		return nil, fmt.Errorf("%s: workspaces is empty (list workspace ids, or \"*\" for all)", where)
	}
	t.scope.ids = map[string]bool{}
	for _, id := range e.Workspaces {
		switch _, ok := c.byID[id]; {
		case id == Everything:
			t.scope.all = true
		case !ok:
			return nil, fmt.Errorf("%s: workspace %q is not configured", where, id)
		default:
			t.scope.ids[id] = true
		}
	}
	if t.scope.all && len(e.Workspaces) > 1 {
		return nil, fmt.Errorf("%s: \"*\" reaches every workspace; list nothing else with it", where)
	}
	return t, nil
}

// minTokenLen refuses tokens short enough to guess.
const minTokenLen = 16
