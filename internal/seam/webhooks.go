package seam

import (
	"context"
	"fmt"
	"strings"
)

// Webhook is Seam's webhook: an endpoint Seam delivers events to, signed
// with Secret (whsec_…). Its String and Format leave Secret out, so that
// printing a Webhook with any fmt verb never shows it; encoding/json does
// write it, since that is Seam's wire shape.
type Webhook struct {
	WebhookID  string   `json:"webhook_id"`
	URL        string   `json:"url"`
	EventTypes []string `json:"event_types,omitempty"`
	Secret     string   `json:"secret,omitempty"`
}

// String describes the webhook without its secret.
func (w Webhook) String() string {
	secret := "none"
	if w.Secret != "" {
		secret = "<secret>"
	}
	return fmt.Sprintf("{webhook_id:%s url:%s event_types:[%s] secret:%s}",
		w.WebhookID, w.URL, strings.Join(w.EventTypes, " "), secret)
}

// Format writes String for every verb (%v, %+v, %#v, %s, %q, %d…): fmt
// would otherwise print the fields, the secret among them, for the verbs
// that skip String.
func (w Webhook) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", w.String())
		return
	}
	_, _ = f.Write([]byte(w.String()))
}

// CreateWebhook registers url for eventTypes (all, ["*"], when empty):
// POST /webhooks/create. The answer carries the new webhook's secret.
// Never retried, like an encode: a second create would register a second
// endpoint, with its own secret; on an error wrapping ErrUnavailable the
// webhook may exist, which ListWebhooks shows.
func (c *Client) CreateWebhook(ctx context.Context, url string, eventTypes []string) (Webhook, error) {
	body := struct {
		URL        string   `json:"url"`
		EventTypes []string `json:"event_types,omitempty"`
	}{url, eventTypes}
	var out struct {
		Webhook Webhook `json:"webhook"`
	}
	err := c.call(ctx, "/webhooks/create", body, &out, false)
	return out.Webhook, err
}

// ListWebhooks reads the workspace's webhooks: POST /webhooks/list.
func (c *Client) ListWebhooks(ctx context.Context) ([]Webhook, error) {
	var out struct {
		Webhooks []Webhook `json:"webhooks"`
	}
	err := c.call(ctx, "/webhooks/list", struct{}{}, &out, true)
	return out.Webhooks, err
}

// GetWebhook reads one webhook: POST /webhooks/get. An unknown id is an
// *APIError with Status 404 and Type "webhook_not_found".
func (c *Client) GetWebhook(ctx context.Context, id string) (Webhook, error) {
	var out struct {
		Webhook Webhook `json:"webhook"`
	}
	err := c.call(ctx, "/webhooks/get", map[string]string{"webhook_id": id}, &out, true)
	return out.Webhook, err
}

// DeleteWebhook removes a webhook: POST /webhooks/delete. It is not
// retried; on an error wrapping ErrUnavailable it may have been deleted,
// and a 404 webhook_not_found from a later call means it is gone.
func (c *Client) DeleteWebhook(ctx context.Context, id string) error {
	var out struct{}
	return c.call(ctx, "/webhooks/delete", map[string]string{"webhook_id": id}, &out, false)
}
