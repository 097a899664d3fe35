package seamsim

import (
	"encoding/json"
	"math"
	"slices"
	"time"
)

// DefaultEventsLimit is how many events /events/list returns when the
// request has no limit, as Seam.
const DefaultEventsLimit = 500

// loggedEvent is one event of the workspace's log: the webhook body,
// exactly as it was (or would have been) delivered.
type loggedEvent struct {
	createdAt time.Time
	eventType string
	body      json.RawMessage
}

// Events returns every event the Sim generated, oldest first, each the
// exact webhook body, whether its delivery succeeded, failed, was dropped
// (DropNextWebhook) or there was no webhook to send it to.
func (s *Sim) Events() []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]json.RawMessage, len(s.events))
	for i, e := range s.events {
		out[i] = slices.Clone(e.body)
	}
	return out
}

// listEvents serves /events/list: exactly one of since (events created
// after it) and between (created strictly inside it), as Seam's reference
// fake compares created_at; event_type and event_types filter; the newest
// come first, as in Seam's documented answers, and limit (default 500)
// keeps the newest. Each event is the webhook body's bytes.
func (s *Sim) listEvents(r request) (envelope, *apiError) {
	var after, before time.Time
	bounded := false // before is set
	switch {
	case r.Since == nil && r.Between == nil:
		return nil, invalidInput("Must specify either since or between")
	case r.Since != nil && r.Between != nil:
		return nil, invalidInput("Cannot specify both since and between")
	case r.Since != nil:
		t, err := time.Parse(time.RFC3339Nano, *r.Since)
		if err != nil {
			return nil, invalidInput("since must be an RFC 3339 timestamp: %v", err)
		}
		after = t
	default:
		if len(r.Between) != 2 {
			return nil, invalidInput("between must hold 2 timestamps, got %d", len(r.Between))
		}
		var err error
		if after, err = time.Parse(time.RFC3339Nano, r.Between[0]); err == nil {
			before, err = time.Parse(time.RFC3339Nano, r.Between[1])
		}
		if err != nil {
			return nil, invalidInput("between must hold RFC 3339 timestamps: %v", err)
		}
		bounded = true
	}
	limit := DefaultEventsLimit
	if r.Limit != nil {
		if *r.Limit < 1 || *r.Limit != math.Trunc(*r.Limit) || *r.Limit > math.MaxInt32 {
			return nil, invalidInput("limit must be a positive whole number, got %v", *r.Limit)
		}
		limit = int(*r.Limit)
	}
	offset := 0
	if r.Offset != nil {
		if *r.Offset < 0 || *r.Offset != math.Trunc(*r.Offset) || *r.Offset > math.MaxInt32 {
			return nil, invalidInput("unstable_offset must be a whole number, got %v", *r.Offset)
		}
		offset = int(*r.Offset)
	}

	s.mu.Lock()
	var match []loggedEvent
	for _, e := range slices.Backward(s.events) {
		switch {
		case !e.createdAt.After(after),
			bounded && !e.createdAt.Before(before),
			r.EventType != "" && e.eventType != r.EventType,
			r.EventTypes != nil && !slices.Contains(r.EventTypes, e.eventType):
			continue
		}
		match = append(match, e)
	}
	s.mu.Unlock()
	// Newest first; events of the same millisecond, latest made first. The
	// log is in creation order already, unless Options.Now went backwards.
	slices.SortStableFunc(match, func(a, b loggedEvent) int { return b.createdAt.Compare(a.createdAt) })
	match = match[min(offset, len(match)):]
	out := make([]json.RawMessage, 0, min(len(match), limit))
	for _, e := range match[:min(len(match), limit)] {
		out = append(out, e.body) // never modified: shared safely
	}
	return envelope{"events": out}, nil
}
