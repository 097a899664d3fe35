package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/workspaces"
)

const seamVars = `
environment: SEAM_API_KEY (or SEAM_API_KEY_FILE), SEAM_WORKSPACE_ID (with a personal access
token), SEAM_API_URL; or WORKSPACES_FILE with --workspace.`

// webhookFlags are the flags register and rotate share.
type webhookFlags struct {
	url, eventTypes string
	anyPath, entry  bool
}

func (c *cli) webhookFlagSet(name, synopsis string) (*webhookFlags, func([]string) ([]string, error)) {
	f := &webhookFlags{}
	fs := c.flags(name, synopsis)
	fs.StringVar(&f.url, "url", "", "the receiver's public webhook URL, https://…"+events.Path)
	fs.StringVar(&f.eventTypes, "event-types", "", "comma-separated event types, or * for all (default: the ones cardwire acts on)")
	fs.BoolVar(&f.anyPath, "any-path", false, "accept a URL whose path does not end in "+events.Path+" (a proxy rewrites it)")
	fs.BoolVar(&f.entry, "print-workspace-entry", false, `print only a WORKSPACES_FILE workspace entry {"workspace_id", "webhook_secrets"} with the new secret, for pasting`)
	return f, func(args []string) ([]string, error) { return c.parse(fs, args) }
}

// types is --event-types as CreateWebhook takes it: nil for every type.
func (f *webhookFlags) types(def []string) []string {
	switch v := strings.TrimSpace(f.eventTypes); v {
	case "":
		return def
	case "*":
		return nil
	default:
		return commaList(v)
	}
}

// checkHookURL refuses a webhook URL Seam cannot deliver to, or that is
// not the receiver's webhook path.
func checkHookURL(raw string, anyPath bool) error {
	if raw == "" {
		return usagef("--url is required: the receiver's public webhook URL, https://…%s", events.Path)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return usagef("--url must be an absolute https URL such as https://hooks.example.com%s, got %q", events.Path, raw)
	}
	if host := u.Hostname(); u.Scheme == "http" {
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return usagef("--url must be https:// (http:// only to a loopback address, for the simulator), got %q", raw)
		}
	}
	if !anyPath && !strings.HasSuffix(u.Path, events.Path) {
		return usagef("--url must end in the receiver's webhook path %s, got path %q (pass --any-path if a proxy rewrites it)", events.Path, u.Path)
	}
	return nil
}

// webhookOut is a webhook as the commands print it in JSON.
type webhookOut struct {
	WebhookID  string   `json:"webhook_id"`
	URL        string   `json:"url"`
	EventTypes []string `json:"event_types"`
	// Secret is set only for a webhook just created.
	Secret string `json:"secret,omitempty"`
}

func out(w seam.Webhook, withSecret bool) webhookOut {
	o := webhookOut{WebhookID: w.WebhookID, URL: w.URL, EventTypes: w.EventTypes}
	if o.EventTypes == nil {
		o.EventTypes = []string{}
	}
	if withSecret {
		o.Secret = w.Secret
	}
	return o
}

// sameURL reports whether two webhook URLs name the same endpoint (a
// trailing slash aside).
func sameURL(a, b string) bool { return strings.TrimRight(a, "/") == strings.TrimRight(b, "/") }

func forURL(hooks []seam.Webhook, u string) []seam.Webhook {
	var out []seam.Webhook
	for _, h := range hooks {
		if sameURL(h.URL, u) {
			out = append(out, h)
		}
	}
	return out
}

func ids(hooks []seam.Webhook) []string {
	out := []string{}
	for _, h := range hooks {
		out = append(out, h.WebhookID)
	}
	return out
}

func webhooksRegister(ctx context.Context, c *cli, args []string) error {
	f, parse := c.webhookFlagSet("webhooks register",
		"usage: cardwire webhooks register --url https://…/webhooks/seam [--event-types a,b] [--print-workspace-entry]\n\n"+
			"Creates the workspace's Seam webhook for the receiver (refused when one exists for the URL:\n"+
			"use webhooks rotate to replace its secret) and prints its secret, once."+seamVars)
	pos, err := parse(args)
	if err != nil {
		return done(err)
	}
	if len(pos) > 0 {
		return usagef("webhooks register takes no arguments, got %q", pos)
	}
	if err := checkHookURL(f.url, f.anyPath); err != nil {
		return err
	}
	t, err := c.seam(f.entry)
	if err != nil {
		return err
	}
	hooks, err := t.client.ListWebhooks(ctx)
	if err != nil {
		return t.explain("/webhooks/list", err)
	}
	if have := forURL(hooks, f.url); len(have) > 0 {
		return fmt.Errorf("a webhook for %s already exists (%s): use webhooks rotate --url to replace its secret, or webhooks delete %s first",
			f.url, strings.Join(ids(have), ", "), have[0].WebhookID)
	}
	w, err := t.client.CreateWebhook(ctx, f.url, f.types(streams.SubscribedEventTypes()))
	if err != nil {
		return t.explain("/webhooks/create", err)
	}
	if f.entry {
		return c.writeJSON(workspaces.WorkspaceEntry{WorkspaceID: t.id, WebhookSecrets: []string{w.Secret}})
	}
	if c.json() {
		return c.writeJSON(struct {
			WorkspaceID string     `json:"workspace_id,omitempty"`
			Webhook     webhookOut `json:"webhook"`
		}{t.id, out(w, true)})
	}
	if err := c.printHook(t, w); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "\nKeep the secret: this is the only time cardwire prints it. Add it to %s,\n"+
		"so that the receivers accept this webhook's deliveries (until then they answer 401 and Svix retries).\n", secretHome(t))
	return err
}

func (c *cli) printHook(t *seamTarget, w seam.Webhook) error {
	return c.fields("workspace", t.label, "webhook_id", w.WebhookID, "url", w.URL,
		"event_types", eventTypes(w.EventTypes), "secret", w.Secret)
}

func eventTypes(types []string) string {
	switch {
	case len(types) == 0 || slices.Contains(types, "*"):
		return "* (all)"
	case slices.Equal(types, streams.SubscribedEventTypes()):
		return fmt.Sprintf("the %d cardwire acts on (%s, …)", len(types), types[0])
	}
	return strings.Join(types, ",")
}

// secretHome says where the receivers read the workspace's secrets.
func secretHome(t *seamTarget) string {
	if t.file {
		return fmt.Sprintf("the webhook_secrets of workspace %s in WORKSPACES_FILE", t.label)
	}
	return "SEAM_WEBHOOK_SECRET (comma-separated) or SEAM_WEBHOOK_SECRET_FILE (one a line)"
}

func webhooksList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("webhooks list", "usage: cardwire webhooks list\n\nThe workspace's webhooks, without their secrets."+seamVars)
	if _, err := c.parseArgs(fs, args, 0, ""); err != nil {
		return done(err)
	}
	t, err := c.seam(false)
	if err != nil {
		return err
	}
	hooks, err := t.client.ListWebhooks(ctx)
	if err != nil {
		return t.explain("/webhooks/list", err)
	}
	if c.json() {
		list := []webhookOut{}
		for _, h := range hooks {
			list = append(list, out(h, false))
		}
		return c.writeJSON(struct {
			Webhooks []webhookOut `json:"webhooks"`
		}{list})
	}
	if len(hooks) == 0 {
		_, err := fmt.Fprintln(c.stdout, "no webhooks (webhooks register --url creates one)")
		return err
	}
	var rows [][]string
	seen := map[string]bool{}
	var rotating []string
	for _, h := range hooks {
		rows = append(rows, []string{h.WebhookID, h.URL, eventTypes(h.EventTypes)})
		if u := strings.TrimRight(h.URL, "/"); seen[u] && !slices.Contains(rotating, h.URL) {
			rotating = append(rotating, h.URL)
		} else {
			seen[u] = true
		}
	}
	if err := c.table([]string{"WEBHOOK_ID", "URL", "EVENT_TYPES"}, rows); err != nil {
		return err
	}
	for _, u := range rotating {
		fmt.Fprintf(c.stdout, "\n%s has more than one webhook: a rotation in progress? (webhooks rotate --finish --old <webhook_id>)\n", u)
	}
	return nil
}

func webhooksDelete(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("webhooks delete", "usage: cardwire webhooks delete <webhook_id>\n\nDeletes a webhook: Seam stops delivering to it at once."+seamVars)
	pos, err := c.parseArgs(fs, args, 1, "a webhook id (webhooks list shows them)")
	if err != nil {
		return done(err)
	}
	t, err := c.seam(false)
	if err != nil {
		return err
	}
	if err := deleteHook(ctx, t, pos[0]); err != nil {
		return err
	}
	if c.json() {
		return c.writeJSON(map[string]string{"deleted": pos[0]})
	}
	_, err = fmt.Fprintf(c.stdout, "deleted webhook %s\n", pos[0])
	return err
}

func deleteHook(ctx context.Context, t *seamTarget, id string) error {
	err := t.client.DeleteWebhook(ctx, id)
	var apiErr *seam.APIError
	if errors.As(err, &apiErr) && apiErr.Type == "webhook_not_found" {
		return fmt.Errorf("no webhook %s in workspace %s (webhooks list shows them)", id, t.label)
	}
	if err != nil {
		return t.explain("/webhooks/delete", err)
	}
	return nil
}

func webhooksRotate(ctx context.Context, c *cli, args []string) error {
	f, parse := c.webhookFlagSetRotate()
	pos, err := parse(args)
	if err != nil {
		return done(err)
	}
	if len(pos) > 0 {
		return usagef("webhooks rotate takes no arguments, got %q", pos)
	}
	if f.finish {
		if f.old == "" || f.url != "" {
			return usagef("webhooks rotate --finish needs --old <webhook_id> (and no --url)")
		}
		return rotateFinish(ctx, c, f.old)
	}
	if f.old != "" {
		return usagef("--old goes with --finish")
	}
	if err := checkHookURL(f.url, f.anyPath); err != nil {
		return err
	}
	t, err := c.seam(f.entry)
	if err != nil {
		return err
	}
	hooks, err := t.client.ListWebhooks(ctx)
	if err != nil {
		return t.explain("/webhooks/list", err)
	}
	have := forURL(hooks, f.url)
	switch {
	case len(have) == 0:
		return fmt.Errorf("no webhook for %s to rotate: webhooks register --url creates one", f.url)
	case len(have) > 1:
		return fmt.Errorf("%d webhooks for %s already (%s): a rotation is in progress; finish it with webhooks rotate --finish --old <webhook_id>",
			len(have), f.url, strings.Join(ids(have), ", "))
	}
	old := have[0]
	w, err := t.client.CreateWebhook(ctx, f.url, f.types(old.EventTypes))
	if err != nil {
		return t.explain("/webhooks/create", err)
	}
	steps := []string{
		fmt.Sprintf("add the new secret to %s, next to the old one", secretHome(t)),
		"wait until every receiver has it (WORKSPACES_FILE is reloaded every WORKSPACES_RELOAD_INTERVAL; SEAM_WEBHOOK_SECRET needs a restart); meanwhile each event comes through both webhooks and is stored once",
		fmt.Sprintf("cardwire webhooks rotate --finish --old %s", old.WebhookID),
		"remove the old secret",
	}
	if f.entry {
		secrets := t.secrets
		if !t.file && old.Secret != "" {
			secrets = []string{old.Secret}
		}
		return c.writeJSON(workspaces.WorkspaceEntry{WorkspaceID: t.id, WebhookSecrets: append(slices.Clone(secrets), w.Secret)})
	}
	if c.json() {
		return c.writeJSON(struct {
			WorkspaceID  string     `json:"workspace_id,omitempty"`
			Webhook      webhookOut `json:"webhook"`
			OldWebhookID string     `json:"old_webhook_id"`
			Steps        []string   `json:"steps"`
		}{t.id, out(w, true), old.WebhookID, steps})
	}
	if err := c.printHook(t, w); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\nA second webhook for %s (the old one is %s). Keep the secret: this is the only time cardwire prints it. Next:\n", f.url, old.WebhookID)
	for i, s := range steps {
		fmt.Fprintf(c.stdout, "  %d. %s\n", i+1, s)
	}
	return nil
}

type rotateFlags struct {
	webhookFlags
	finish bool
	old    string
}

func (c *cli) webhookFlagSetRotate() (*rotateFlags, func([]string) ([]string, error)) {
	f := &rotateFlags{}
	fs := c.flags("webhooks rotate",
		"usage: cardwire webhooks rotate --url https://…/webhooks/seam [--event-types a,b] [--print-workspace-entry]\n"+
			"       cardwire webhooks rotate --finish --old <webhook_id>\n\n"+
			"Seam cannot change a webhook's secret: a rotation creates a second webhook for the same URL\n"+
			"(with the old one's event types), you roll its secret out to the receivers, and --finish\n"+
			"deletes the old webhook."+seamVars)
	fs.StringVar(&f.url, "url", "", "the receiver's public webhook URL, https://…"+events.Path)
	fs.StringVar(&f.eventTypes, "event-types", "", "comma-separated event types, or * for all (default: the old webhook's)")
	fs.BoolVar(&f.anyPath, "any-path", false, "accept a URL whose path does not end in "+events.Path)
	fs.BoolVar(&f.entry, "print-workspace-entry", false, `print only a WORKSPACES_FILE workspace entry {"workspace_id", "webhook_secrets"} with the old and the new secret`)
	fs.BoolVar(&f.finish, "finish", false, "delete the old webhook (--old) now that the new secret is rolled out")
	fs.StringVar(&f.old, "old", "", "with --finish: the old webhook's id")
	return f, func(args []string) ([]string, error) { return c.parse(fs, args) }
}

// rotateFinish deletes the old webhook, refusing when it is the only one
// for its URL: that would stop the deliveries, not finish a rotation.
func rotateFinish(ctx context.Context, c *cli, oldID string) error {
	t, err := c.seam(false)
	if err != nil {
		return err
	}
	old, err := t.client.GetWebhook(ctx, oldID)
	var apiErr *seam.APIError
	if errors.As(err, &apiErr) && apiErr.Type == "webhook_not_found" {
		return fmt.Errorf("no webhook %s in workspace %s (webhooks list shows them)", oldID, t.label)
	}
	if err != nil {
		return t.explain("/webhooks/get", err)
	}
	hooks, err := t.client.ListWebhooks(ctx)
	if err != nil {
		return t.explain("/webhooks/list", err)
	}
	var rest []seam.Webhook
	for _, h := range forURL(hooks, old.URL) {
		if h.WebhookID != oldID {
			rest = append(rest, h)
		}
	}
	if len(rest) == 0 {
		return fmt.Errorf("webhook %s is the only one for %s: deleting it would stop the deliveries; start with webhooks rotate --url %s (or webhooks delete %s to remove it anyway)",
			oldID, old.URL, old.URL, oldID)
	}
	if err := deleteHook(ctx, t, oldID); err != nil {
		return err
	}
	if c.json() {
		return c.writeJSON(struct {
			Deleted   string   `json:"deleted"`
			Remaining []string `json:"remaining"`
		}{oldID, ids(rest)})
	}
	_, err = fmt.Fprintf(c.stdout, "deleted the old webhook %s; %s now delivers to %s.\nRemove the old secret from %s.\n",
		oldID, strings.Join(ids(rest), ", "), old.URL, secretHome(t))
	return err
}
