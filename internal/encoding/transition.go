package encoding

import "time"

// Result is what handling an event did; it labels the events counter.
type Result string

// Results of handling an event.
const (
	ResultMatched      Result = "matched"       // it settled a pending encoding
	ResultEarly        Result = "early"         // no encoding it can belong to yet: kept
	ResultUnmatched    Result = "unmatched"     // kept, and nothing registered for it in time
	ResultDuplicate    Result = "duplicate"     // this event already settled the encoding
	ResultStale        Result = "stale"         // older than every encoding cardwire knows of its target
	ResultLate         Result = "late"          // it belongs to an encoding that is already final
	ResultIgnored      Result = "ignored"       // an event type with no effect on encodings
	ResultHeld         Result = "held"          // a failure-type event waiting out the order grace
	ResultDeadLettered Result = "dead_lettered" // given up on; see the dead-letter subject
	ResultRetried      Result = "retried"       // failed this time; redelivered after a delay
)

// Results lists every Result, for metrics.
var Results = []Result{ResultMatched, ResultEarly, ResultUnmatched, ResultDuplicate, ResultStale, ResultLate,
	ResultIgnored, ResultHeld, ResultDeadLettered, ResultRetried}

// Apply computes the record after ev, which attribution says belongs to
// rec. It is pure: the caller stores the result with a compare-and-set.
// changed is true only with ResultMatched. margin guards the one case
// attribution cannot see, an encoder removal that occurred before the
// encoding was requested.
func Apply(rec Record, ev Event, margin time.Duration, now time.Time) (next Record, res Result, changed bool) {
	eff, ok := EffectOf(ev.EventType)
	switch {
	case !ok:
		return rec, ResultIgnored, false
	case rec.WorkspaceID != ev.WorkspaceID:
		// Never across workspaces: targets are per workspace, so this is a
		// guard, not a path.
		return rec, ResultStale, false
	case rec.EventID == ev.EventID:
		return rec, ResultDuplicate, false
	case rec.Status.Terminal():
		return rec, ResultLate, false
	case ev.OccurredAt.Before(rec.RequestedAt.Add(-margin)):
		return rec, ResultStale, false
	}
	next = rec.settle(eff.Status, ResolvedByWebhook, now)
	next.IssueKind = eff.IssueKind
	next.EventID = ev.EventID
	if eff.ErrType != "" {
		next.Error = &RecordError{Type: eff.ErrType, Message: "Seam sent " + ev.EventType}
	}
	return next, ResultMatched, true
}

// Card is what Seam says of an issued credential.
type Card struct {
	Number   string
	IssuedAt *time.Time
}

// Enrich copies a card number and issue time onto an issued record and
// reports whether that changed it.
func Enrich(r Record, c Card) (Record, bool) {
	changed := false
	if c.Number != "" && r.CardNumber != c.Number {
		r.CardNumber, changed = c.Number, true
	}
	if c.IssuedAt != nil && (r.IssuedAt == nil || !r.IssuedAt.Equal(*c.IssuedAt)) {
		at := c.IssuedAt.UTC()
		r.IssuedAt, changed = &at, true
	}
	return r, changed
}
