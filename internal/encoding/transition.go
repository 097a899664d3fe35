package encoding

import "time"

// Result is what applying an event did; it labels the events counter.
type Result string

// Results of applying an event.
const (
	ResultMatched      Result = "matched"       // it settled a pending encoding
	ResultEarly        Result = "early"         // no encoding yet: kept in the early area
	ResultUnmatched    Result = "unmatched"     // nothing registered for it (and nothing will be waiting)
	ResultDuplicate    Result = "duplicate"     // this event already settled the encoding
	ResultStale        Result = "stale"         // it happened before the encoding was requested
	ResultConflict     Result = "conflict"      // the encoding was already terminal
	ResultIgnored      Result = "ignored"       // an event type with no effect on encodings
	ResultDeadLettered Result = "dead_lettered" // given up on; see the dead-letter subject
	ResultRetried      Result = "retried"       // failed this time; redelivered after a delay
)

// apply computes the record after ev, given the clock-skew margin. It is
// pure: the caller stores the result with a compare-and-set. changed is
// false unless the result is ResultMatched.
func apply(rec Record, ev Event, margin time.Duration, now time.Time) (next Record, res Result, changed bool) {
	eff, ok := effectOf(ev.EventType)
	switch {
	case !ok:
		return rec, ResultIgnored, false
	case rec.WorkspaceID != ev.WorkspaceID:
		// Never across workspaces; the indexes are per workspace, so this is
		// a guard, not a path.
		return rec, ResultUnmatched, false
	case rec.EventID == ev.EventID:
		return rec, ResultDuplicate, false
	case rec.Status.Terminal():
		return rec, ResultConflict, false
	case eff.status == StatusIssued && ev.OccurredAt.Before(rec.RequestedAt.Add(-margin)):
		// An old success (a redelivery, a retry hours late) must not
		// confirm a newer request. Failures are not filtered: a credential
		// deleted before the request still cannot be encoded.
		return rec, ResultStale, false
	}
	next = rec
	next.Status = eff.status
	next.IssueKind = eff.issueKind
	next.ResolvedBy = ResolvedByWebhook
	next.EventID = ev.EventID
	at := now.UTC()
	next.ResolvedAt = &at
	if eff.errType != "" {
		next.Error = &RecordError{Type: eff.errType, Message: "Seam sent " + ev.EventType}
	}
	return next, ResultMatched, true
}
