package worker

import (
	"sync"

	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/workspaces"
)

// directory is where the worker learns the workspaces it serves; a reload
// of WORKSPACES_FILE changes what Current returns.
type directory interface {
	Current() *workspaces.Config
}

// tenants gives each workspace's requests their Seam client: without
// WORKSPACES_FILE the one client for all; with it, a client With the
// workspace's own credentials, made on first use and kept per
// credentials (a rotated key makes a new one), sharing the base client's
// rate limit. Each client has its own batcher: /action_attempts/list
// answers for one workspace's credentials only.
type tenants struct {
	dir    directory
	single *tenantClient // no WORKSPACES_FILE: every workspace's
	base   *seam.Client  // nil: no Seam at all (track-only)

	mu      sync.Mutex
	clients map[workspaces.Credentials]*tenantClient
}

type tenantClient struct {
	api   seamAPI
	batch *attemptBatcher
}

func newTenants(dir directory, client *seam.Client) *tenants {
	t := &tenants{dir: dir, base: client, clients: map[workspaces.Credentials]*tenantClient{}}
	if dir == nil {
		if client != nil {
			t.single = &tenantClient{api: client, batch: newAttemptBatcher(client, attemptBatchWindow, attemptBatchMax)}
		}
	}
	return t
}

// seam returns the Seam client of workspace ws's requests, or nil when it
// is track-only (no credentials, or not configured).
func (t *tenants) seam(ws string) *tenantClient {
	if t.dir == nil || t.base == nil {
		return t.single
	}
	cred, ok := t.dir.Current().Seam(ws)
	if !ok {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.clients[cred]; ok {
		return c
	}
	client, err := t.base.With(seam.Credentials{APIKey: cred.APIKey.Reveal(), WorkspaceID: cred.Workspace})
	if err != nil {
		return nil // an empty key: track-only
	}
	c := &tenantClient{api: client, batch: newAttemptBatcher(client, attemptBatchWindow, attemptBatchMax)}
	t.clients[cred] = c
	return c
}

// label is workspace ws's name in metrics: its configured label, "default"
// without WORKSPACES_FILE, "other" for a workspace no longer configured.
func (t *tenants) label(ws string) string {
	if t.dir == nil {
		return "default"
	}
	cfg := t.dir.Current()
	if cfg.IsSingle() {
		return "default"
	}
	if w, ok := cfg.Workspace(ws); ok {
		return w.Label()
	}
	return "other"
}
