package seamsim

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// message is one Svix message: its svix-id and body stay the same on every
// delivery attempt.
type message struct {
	id                 string
	body               []byte
	eventID, eventType string
}

func newMessageID() string { return "msg_" + strings.ReplaceAll(uuid.NewString(), "-", "") }

// send makes delivery attempt number attempt (0 first) and, when it fails,
// schedules the next one after RetryDelays[attempt], until they run out or
// the receiver answers "webhook-delivery: abort-message".
func (s *Sim) send(m message, attempt int) {
	log := s.o.Log.With().Str("svix_id", m.id).Str("event_id", m.eventID).Str("event_type", m.eventType).Int("attempt", attempt+1).Logger()
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

// post makes one signed POST, with a fresh svix-timestamp as Svix does.
func (s *Sim) post(m message) (status int, abort bool, err error) {
	ts := s.o.Now()
	sig, err := s.signer.Sign(m.id, ts, m.body)
	if err != nil {
		return 0, false, err
	}
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.o.WebhookURL, bytes.NewReader(m.body))
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
