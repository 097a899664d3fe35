package encoding

import (
	"slices"
	"time"
)

// TargetState is what the worker keeps for one credential or access method:
// its recent encodings and the events that belong to none of them yet (or
// to one already final). Registrations and events change it with a
// compare-and-set, so one of the two always sees the other.
type TargetState struct {
	// Encodings in the order they were registered; the last one is the
	// only one that can be pending.
	Encodings []Claim `json:"encodings"`
	// Events kept until an encoding they can belong to is registered, or
	// their time runs out.
	Events []KeptEvent `json:"events,omitempty"`
}

// Claim is one encoding of a target.
type Claim struct {
	EncodingID  string    `json:"encoding_id"`
	RequestedAt time.Time `json:"requested_at"`
}

// KeptEvent is an event waiting in a TargetState.
type KeptEvent struct {
	Event Event     `json:"event"`
	Until time.Time `json:"until"`
}

// maxClaims bounds TargetState.Encodings; older encodings of the same card
// are long settled, and an event older than every kept claim is stale.
const maxClaims = 16

// maxKept bounds TargetState.Events: a target receives a handful of events
// per encoding.
const maxKept = 64

// Verdict is where an event belongs.
type Verdict int

// Verdicts of Attribute.
const (
	// BelongsTo: the event belongs to the encoding Attribute names.
	BelongsTo Verdict = iota
	// NoEncodingYet: no encoding it can belong to is registered (yet).
	NoEncodingYet
	// OlderThanAll: it occurred before every known encoding of the target
	// (less the skew margin): it belongs to one cardwire no longer knows.
	OlderThanAll
)

// Attribute says which encoding ev belongs to: the latest one requested
// before ev occurred. Only when none was requested before it does the skew
// margin apply: then the earliest one requested within margin after it.
// An event never moves to a later encoding because an earlier one is
// final; that is what keeps a previous card's late success from
// confirming a re-encode.
func (s TargetState) Attribute(ev Event, margin time.Duration) (string, Verdict) {
	var before *Claim
	for i := range s.Encodings {
		c := &s.Encodings[i]
		if !c.RequestedAt.After(ev.OccurredAt) && (before == nil || !c.RequestedAt.Before(before.RequestedAt)) {
			before = c
		}
	}
	if before != nil {
		return before.EncodingID, BelongsTo
	}
	var within *Claim
	for i := range s.Encodings {
		c := &s.Encodings[i]
		if !c.RequestedAt.After(ev.OccurredAt.Add(margin)) && (within == nil || c.RequestedAt.Before(within.RequestedAt)) {
			within = c
		}
	}
	if within != nil {
		return within.EncodingID, BelongsTo
	}
	if len(s.Encodings) > 0 {
		return "", OlderThanAll
	}
	return "", NoEncodingYet
}

// Latest is the most recently registered encoding, or false.
func (s TargetState) Latest() (Claim, bool) {
	if len(s.Encodings) == 0 {
		return Claim{}, false
	}
	return s.Encodings[len(s.Encodings)-1], true
}

// Has reports whether encodingID is one of the target's encodings.
func (s TargetState) Has(encodingID string) bool {
	return slices.ContainsFunc(s.Encodings, func(c Claim) bool { return c.EncodingID == encodingID })
}

// AddClaim registers c (once), dropping the oldest claims beyond the bound.
func (s *TargetState) AddClaim(c Claim) {
	if s.Has(c.EncodingID) {
		return
	}
	s.Encodings = append(s.Encodings, c)
	if n := len(s.Encodings) - maxClaims; n > 0 {
		s.Encodings = slices.Delete(s.Encodings, 0, n)
	}
}

// Keep adds ev until until, unless it is kept already; it reports whether
// the state changed. Beyond the bound the event that expires first goes.
func (s *TargetState) Keep(ev Event, until time.Time) bool {
	if slices.ContainsFunc(s.Events, func(k KeptEvent) bool { return k.Event.EventID == ev.EventID }) {
		return false
	}
	s.Events = append(s.Events, KeptEvent{Event: ev, Until: until})
	if len(s.Events) > maxKept {
		i := 0
		for j, k := range s.Events {
			if k.Until.Before(s.Events[i].Until) {
				i = j
			}
		}
		s.Events = slices.Delete(s.Events, i, i+1)
	}
	return true
}

// EventsFor returns the kept events that belong to encodingID, in the
// order they occurred.
func (s TargetState) EventsFor(encodingID string, margin time.Duration) []Event {
	var out []Event
	for _, k := range s.Events {
		if id, v := s.Attribute(k.Event, margin); v == BelongsTo && id == encodingID {
			out = append(out, k.Event)
		}
	}
	slices.SortFunc(out, func(a, b Event) int { return a.OccurredAt.Compare(b.OccurredAt) })
	return out
}

// Forget removes the kept events with these ids; it reports whether any
// was there.
func (s *TargetState) Forget(eventIDs ...string) bool {
	n := len(s.Events)
	s.Events = slices.DeleteFunc(s.Events, func(k KeptEvent) bool { return slices.Contains(eventIDs, k.Event.EventID) })
	return len(s.Events) != n
}
