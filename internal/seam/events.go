package seam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrInvalidRequest is wrapped by the errors of a request the client
// refuses to send, before any request is made.
var ErrInvalidRequest = errors.New("seam: invalid request")

// ListEventsRequest selects events of Seam's event log: POST /events/list.
// Exactly one of Since and Between must be set.
type ListEventsRequest struct {
	// Since lists events created after it (Seam's reference fake, like
	// Between, excludes an event created at exactly Since).
	Since *time.Time
	// Between lists events created inside the open interval
	// (Between[0], Between[1]): Seam excludes both ends.
	Between *[2]time.Time
	// EventTypes, when not empty, keeps only events of these types.
	EventTypes []string
	// Limit bounds how many events Seam returns; zero leaves Seam's
	// default (500).
	Limit int
	// Offset (Seam's unstable_offset) skips that many of the matching
	// events: the only way past a full answer whose events all share one
	// millisecond, which no narrower Between can split.
	Offset int
}

// Validate reports why the request cannot be sent (wrapping
// ErrInvalidRequest).
func (r ListEventsRequest) Validate() error {
	switch {
	case (r.Since == nil) == (r.Between == nil):
		return fmt.Errorf("%w: ListEventsRequest: set exactly one of Since and Between", ErrInvalidRequest)
	case r.Between != nil && !r.Between[0].Before(r.Between[1]):
		return fmt.Errorf("%w: ListEventsRequest: Between[0] (%s) must be before Between[1] (%s)",
			ErrInvalidRequest, r.Between[0].Format(time.RFC3339Nano), r.Between[1].Format(time.RFC3339Nano))
	case r.Limit < 0 || r.Offset < 0:
		return fmt.Errorf("%w: ListEventsRequest: Limit and Offset must not be negative, got %d and %d", ErrInvalidRequest, r.Limit, r.Offset)
	}
	return nil
}

// seamTime is the timestamp format Seam writes (created_at and the like):
// RFC 3339 in UTC with milliseconds.
const seamTime = "2006-01-02T15:04:05.000Z07:00"

// MarshalJSON writes the body Seam expects: "since" or "between" as RFC
// 3339 strings with milliseconds, "event_types" and "limit", each left out
// when zero. A lower bound is rounded down and an upper bound up to the
// millisecond (Seam's precision), so the interval sent only ever widens.
func (r ListEventsRequest) MarshalJSON() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	var wire struct {
		Since      string   `json:"since,omitempty"`
		Between    []string `json:"between,omitempty"`
		EventTypes []string `json:"event_types,omitempty"`
		Limit      int      `json:"limit,omitempty"`
		Offset     int      `json:"unstable_offset,omitempty"`
	}
	if r.Since != nil {
		wire.Since = floorMilli(*r.Since)
	} else {
		wire.Between = []string{floorMilli(r.Between[0]), ceilMilli(r.Between[1])}
	}
	wire.EventTypes, wire.Limit, wire.Offset = r.EventTypes, r.Limit, r.Offset
	return json.Marshal(wire)
}

func floorMilli(t time.Time) string { return t.UTC().Truncate(time.Millisecond).Format(seamTime) }

func ceilMilli(t time.Time) string {
	if f := t.UTC().Truncate(time.Millisecond); !f.Equal(t) {
		t = f.Add(time.Millisecond)
	}
	return t.UTC().Format(seamTime)
}

// ListEvents reads one answer of Seam's event log: at most Limit events
// (default 500). Each event is the JSON object exactly as Seam sent it, the
// same bytes as the event's webhook body, so it can be passed on without
// being re-encoded. Seam's documented examples list the newest first; do
// not rely on the order, and page with Between when an answer is full.
//
// An invalid request fails with ErrInvalidRequest before anything is sent.
// It is retried as a read; other failures are an *APIError (400
// invalid_input, 401 unauthorized, …) or wrap ErrUnavailable.
func (c *Client) ListEvents(ctx context.Context, req ListEventsRequest) ([]json.RawMessage, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var out struct {
		Events []json.RawMessage `json:"events"`
	}
	err := c.call(ctx, "/events/list", req, &out, true)
	return out.Events, err
}
