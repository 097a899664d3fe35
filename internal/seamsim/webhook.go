package seamsim

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	svix "github.com/svix/svix-webhooks/go"
)

// hook is one registered webhook: Options.WebhookURL (the first), or one
// made with POST /webhooks/create. Only deleted changes, under Sim.mu.
type hook struct {
	id         string
	url        string
	eventTypes []string // ["*"]: every event
	secret     string
	signer     *svix.Webhook
	deleted    bool
}

// newHook registers nothing; secret must be a valid whsec_ secret.
func newHook(url string, eventTypes []string, secret string) (*hook, error) {
	signer, err := svix.NewWebhook(secret)
	if err != nil {
		return nil, err
	}
	if eventTypes == nil {
		eventTypes = []string{"*"}
	}
	return &hook{id: uuid.NewString(), url: url, eventTypes: eventTypes, secret: secret, signer: signer}, nil
}

// wants reports whether the webhook subscribes to eventType.
func (h *hook) wants(eventType string) bool {
	return slices.Contains(h.eventTypes, "*") || slices.Contains(h.eventTypes, eventType)
}

// newWebhookSecret returns a fresh secret in Svix's format: whsec_ and 24
// random bytes in base64.
func newWebhookSecret() string {
	key := make([]byte, 24)
	_, _ = rand.Read(key) // never fails (crypto/rand)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// message is one Svix message: one event for one webhook. Its svix-id and
// body stay the same on every delivery attempt; each webhook an event goes
// to gets a message of its own, with its own svix-id and signature.
type message struct {
	id                 string
	hook               *hook
	body               []byte
	eventID, eventType string
}

func newMessageID() string { return "msg_" + strings.ReplaceAll(uuid.NewString(), "-", "") }

// send makes delivery attempt number attempt (0 first) and, when it fails,
// schedules the next one after RetryDelays[attempt], until they run out,
// the receiver answers "webhook-delivery: abort-message" or the webhook is
// deleted.
func (s *Sim) send(m message, attempt int) {
	log := s.o.Log.With().Str("svix_id", m.id).Str("webhook_id", m.hook.id).Str("event_id", m.eventID).
		Str("event_type", m.eventType).Int("attempt", attempt+1).Logger()
	s.mu.Lock()
	deleted := m.hook.deleted
	s.mu.Unlock()
	if deleted {
		log.Info().Msg("webhook deleted; message dropped")
		return
	}
	status, abort, err := s.post(m)
	switch {
	case err == nil && status/100 == 2:
		s.delivered.Add(1)
		log.Info().Int("status", status).Msg("webhook delivered")
		return
	case err != nil && s.ctx.Err() != nil:
		return // closed
	case abort:
		log.Warn().Int("status", status).Msg("webhook aborted by the receiver")
		return
	case attempt >= len(s.o.RetryDelays):
		log.Warn().Int("status", status).AnErr("error", err).Msg("webhook failed; no retries left")
		return
	}
	delay := s.o.RetryDelays[attempt]
	log.Warn().Int("status", status).AnErr("error", err).Dur("retry_in", delay).Msg("webhook failed; will retry")
	s.after(delay, func() { s.send(m, attempt+1) })
}

// post makes one POST signed with the message's webhook's secret, with a
// fresh svix-timestamp as Svix does.
func (s *Sim) post(m message) (status int, abort bool, err error) {
	ts := s.o.Now()
	sig, err := m.hook.signer.Sign(m.id, ts, m.body)
	if err != nil {
		return 0, false, err
	}
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, m.hook.url, bytes.NewReader(m.body))
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "seamsim")
	req.Header.Set("svix-id", m.id)
	req.Header.Set("svix-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("svix-signature", sig)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, resp.Header.Get("webhook-delivery") == "abort-message", nil
}

// webhookWire is Seam's webhook object (seam-api-facts.json "webhook").
type webhookWire struct {
	WebhookID  string   `json:"webhook_id"`
	URL        string   `json:"url"`
	EventTypes []string `json:"event_types"`
	Secret     string   `json:"secret"`
}

func (h *hook) wire() webhookWire {
	return webhookWire{WebhookID: h.id, URL: h.url, EventTypes: slices.Clone(h.eventTypes), Secret: h.secret}
}

// createWebhook registers a webhook with a fresh secret. event_types
// defaults to ["*"]; its names are not checked against Seam's list.
func (s *Sim) createWebhook(r request) (envelope, *apiError) {
	if err := checkWebhookURL(r.URL); err != nil {
		return nil, invalidInput("url %s", err)
	}
	h, err := newHook(r.URL, r.EventTypes, newWebhookSecret())
	if err != nil {
		return nil, &apiError{status: http.StatusInternalServerError, typ: "internal_server_error", msg: "making the secret failed"}
	}
	s.mu.Lock()
	s.hooks = append(s.hooks, h)
	s.mu.Unlock()
	s.o.Log.Info().Str("webhook_id", h.id).Str("url", h.url).Strs("event_types", h.eventTypes).Msg("webhook created")
	return envelope{"webhook": h.wire()}, nil
}

// listWebhooks returns the workspace's webhooks in creation order, each
// with its secret: the webhook schema has one, and Seam's reference fake
// lists the same objects that create and get return.
func (s *Sim) listWebhooks(request) (envelope, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]webhookWire, 0, len(s.hooks))
	for _, h := range s.hooks {
		out = append(out, h.wire())
	}
	return envelope{"webhooks": out}, nil
}

func (s *Sim) getWebhook(r request) (envelope, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, h, apiErr := s.hookLocked(r.WebhookID)
	if apiErr != nil {
		return nil, apiErr
	}
	return envelope{"webhook": h.wire()}, nil
}

// deleteWebhook removes a webhook; messages still being retried to it are
// dropped at their next attempt.
func (s *Sim) deleteWebhook(r request) (envelope, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, h, apiErr := s.hookLocked(r.WebhookID)
	if apiErr != nil {
		return nil, apiErr
	}
	h.deleted = true
	s.hooks = slices.Delete(s.hooks, i, i+1)
	s.o.Log.Info().Str("webhook_id", h.id).Msg("webhook deleted")
	return envelope{}, nil
}

// hookLocked finds a registered webhook by id.
func (s *Sim) hookLocked(id string) (int, *hook, *apiError) {
	if id == "" {
		return 0, nil, invalidInput("webhook_id is required")
	}
	for i, h := range s.hooks {
		if h.id == id {
			return i, h, nil
		}
	}
	return 0, nil, notFound("webhook_not_found", "webhook", id)
}
