package events

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
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
}

// Verifier checks Svix signatures against one or more secrets, so that a
// secret rotation never rejects a delivery signed with either secret.
type Verifier struct {
	hooks     []*svix.Webhook
	tolerance time.Duration
	now       func() time.Time
}

// ErrNoSecrets is returned by NewVerifier without any secret.
var ErrNoSecrets = errors.New("no webhook secret")

// NewVerifier accepts whsec_-prefixed (or bare) base64 secrets. It fails
// when there is none or one is not valid base64 or empty; errors name the
// secret's position, never its value.
func NewVerifier(secrets []string, tolerance time.Duration) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, ErrNoSecrets
	}
	if tolerance <= 0 {
		return nil, errors.New("signature tolerance must be positive")
	}
	v := &Verifier{tolerance: tolerance, now: time.Now}
	for i, s := range secrets {
		wh, err := svix.NewWebhook(s)
		if err != nil || strings.TrimPrefix(s, "whsec_") == "" {
			return nil, fmt.Errorf("webhook secret #%d is not a valid whsec_ base64 secret", i+1)
		}
		v.hooks = append(v.hooks, wh)
	}
	return v, nil
}

// Verify checks the signature headers and body, trying every secret. It
// fails with a *SignatureError. The headers are read the way the svix
// library reads them: the svix-* set if complete, else the webhook-* set.
//
// The timestamp is checked here (rather than by the library) so that the
// tolerance is configurable and each failure has its own reason; the HMAC
// comparison is the library's.
func (v *Verifier) Verify(body []byte, h http.Header) (Delivery, error) {
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
	for _, wh := range v.hooks {
		if wh.VerifyIgnoringTimestamp(body, h) == nil {
			return Delivery{ID: id, Timestamp: ts}, nil
		}
	}
	return Delivery{}, &SignatureError{Reason: ReasonNoMatchingSecret}
}
