package encoding

import (
	"time"

	"github.com/cardwire/cardwire/internal/seam"
)

// Action is what to do with a pending encoding at its deadline.
type Action int

// Actions of Decide.
const (
	// Settle: store Decision.Record (issued or failed from Seam's answer,
	// or expired).
	Settle Action = iota
	// Extend: store the record with Decision.Deadline and wait again.
	Extend
	// AskAgain: Seam did not answer; look again after Decision.Retry,
	// changing nothing.
	AskAgain
	// Wait: not due yet (extended meanwhile); look again after
	// Decision.Retry.
	Wait
	// Done: the encoding is already final.
	Done
)

// Policy bounds deadlines.
type Policy struct {
	// ConfirmTimeout is the shortest extension.
	ConfirmTimeout time.Duration
	// MaxAge is how long after its request an encoding may stay pending.
	MaxAge time.Duration
}

// Answer is what asking Seam at a deadline gave. Asked is false when nobody
// could ask (track-only); Err is set when Seam did not answer usefully, and
// Refused when it answered with a 4xx other than 429 (the attempt or
// credential is unknown to it: asking again cannot help).
type Answer struct {
	Asked   bool
	Attempt seam.ActionAttempt
	Card    Card
	Err     error
	Refused *seam.APIError
}

// Decision is the outcome of Decide.
type Decision struct {
	Action   Action
	Record   Record        // with Settle and Extend
	Retry    time.Duration // with AskAgain and Wait
	Why      string        // a short reason, for the log
	Deadline time.Time     // with Extend
}

// Decide turns a deadline and Seam's answer into one action. delivered
// counts the tries so far, for the back-off when Seam does not answer.
func Decide(rec Record, ans Answer, now time.Time, p Policy, delivered uint64) Decision {
	if rec.Status.Terminal() {
		return Decision{Action: Done}
	}
	if wait := rec.Deadline.Sub(now); wait > 0 {
		return Decision{Action: Wait, Retry: wait}
	}
	maxAt := rec.RequestedAt.Add(p.MaxAge)
	expire := func(why string) Decision {
		next := rec.settle(StatusExpired, ResolvedByDeadline, now)
		next.Error = &RecordError{Type: ErrorExpired, Message: why}
		return Decision{Action: Settle, Record: next, Why: why}
	}
	switch {
	case ans.Refused != nil:
		next, _ := Fail(rec, ResolvedByReconcile, RecordError{Type: ans.Refused.Type, Message: ans.Refused.Message}, now)
		return Decision{Action: Settle, Record: next, Why: "Seam refused the reconcile read"}
	case ans.Err != nil:
		if !now.Before(maxAt) {
			return expire("Seam could not be asked before the maximum age: " + ans.Err.Error())
		}
		return Decision{Action: AskAgain, Retry: min(250*time.Millisecond<<min(delivered, 7), 30*time.Second), Why: ans.Err.Error()}
	case ans.Asked && ans.Attempt.Status == seam.AttemptSuccess:
		next := rec.settle(StatusIssued, ResolvedByReconcile, now)
		next.IssueKind = "issued"
		next, _ = Enrich(next, ans.Card)
		return Decision{Action: Settle, Record: next, Why: "Seam says the encode succeeded"}
	case ans.Asked && ans.Attempt.Status == seam.AttemptError:
		e := RecordError{Type: "uncategorized_error", Message: "Seam reported the encode failed"}
		if ans.Attempt.Error != nil {
			e = RecordError{Type: ans.Attempt.Error.Type, Message: ans.Attempt.Error.Message}
		}
		next, _ := Fail(rec, ResolvedByReconcile, e, now)
		return Decision{Action: Settle, Record: next, Why: "Seam says the encode failed"}
	}
	// Still pending at Seam, or nobody to ask (track-only, where only a
	// webhook can settle it): extend, doubling the time waited so far, up
	// to the maximum age.
	if !now.Before(maxAt) {
		if !ans.Asked {
			return expire("no webhook before the maximum age (track-only: no Seam API key to ask)")
		}
		return expire("still pending at Seam after the maximum age")
	}
	next := now.Add(max(p.ConfirmTimeout, now.Sub(rec.RequestedAt)))
	if next.After(maxAt) {
		next = maxAt
	}
	ext := rec
	ext.Deadline = next.UTC()
	return Decision{Action: Extend, Record: ext, Deadline: ext.Deadline, Retry: next.Sub(now), Why: "still pending"}
}
