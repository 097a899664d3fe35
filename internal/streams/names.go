package streams

import "fmt"

// Names other systems depend on (see the design card). Change one only with a
// migration note in the README.
const (
	// EventsStream stores every verified Seam webhook, raw.
	EventsStream = "SEAM_EVENTS"
	// EventsSubjectPrefix is the first two tokens of an event subject:
	// seam.events.<workspace_id>.<event_type>.
	EventsSubjectPrefix = "seam.events"
	// QuarantineSubject holds verified deliveries that are not usable events
	// (not JSON, a missing field, a token that cannot be a subject) so that
	// nothing verified is lost; it lives in EventsStream.
	QuarantineSubject = "seam.quarantine"
	// DeadLetterSubjectPrefix + "." + consumer holds events a consumer gave
	// up on, with the reason in HeaderDeadLetterReason; it lives in
	// EventsStream next to the originals.
	DeadLetterSubjectPrefix = "seam.deadletter"

	// WorkerConsumer is the worker's durable pull consumer on EventsStream.
	WorkerConsumer = "encoding-worker"
	// EncodingsBucket is the KV bucket holding encoding records and indexes.
	EncodingsBucket = "ENCODINGS"
	// PendingBucket is the pending index: one key per pending encoding,
	// <workspace_id>.<requested_ms>.<encoding_id>, read at start-up.
	PendingBucket = "ENCODINGS_PENDING"
	// OutcomesStream carries every encoding state change.
	OutcomesStream = "ENCODING_EVENTS"
	// OutcomesSubjectPrefix starts outcome subjects:
	// encodings.<workspace_id>.<status>.
	OutcomesSubjectPrefix = "encodings"
	// TimersStream holds one timer message per pending encoding (its
	// deadline) and per owed enrichment; a work queue, so each timer is
	// handled by one worker and survives restarts.
	TimersStream = "ENCODING_TIMERS"
	// TimersSubjectPrefix starts timer subjects: cardwire.timers.<encoding_id>.<kind>.
	TimersSubjectPrefix = "cardwire.timers"
	// OutboxConsumer is the workers' durable consumer on the bucket's record
	// revisions; it alone publishes to OutcomesStream.
	OutboxConsumer = "encoding-outbox"
	// SchedulesSubjectPrefix starts the subjects of timer schedules in
	// TimersStream: cardwire.schedules.<id>.<kind>, one (the latest) per
	// subject; the server publishes each to TimerSubject when it is due.
	SchedulesSubjectPrefix = "cardwire.schedules"
	// TimersConsumer is the workers' shared durable consumer on TimersStream.
	TimersConsumer = "encoding-timers"
)

// TimerSubject returns cardwire.timers.<encodingID>.<kind>.
func TimerSubject(encodingID, kind string) (string, error) {
	if !ValidToken(encodingID) || !ValidToken(kind) {
		return "", fmt.Errorf("timer subject for %q/%q: %w", truncate(encodingID), truncate(kind), ErrInvalidToken)
	}
	return TimersSubjectPrefix + "." + encodingID + "." + kind, nil
}

// ScheduleSubject returns cardwire.schedules.<id>.<kind>.
func ScheduleSubject(id, kind string) (string, error) {
	if !ValidToken(id) || !ValidToken(kind) {
		return "", fmt.Errorf("schedule subject for %q/%q: %w", truncate(id), truncate(kind), ErrInvalidToken)
	}
	return SchedulesSubjectPrefix + "." + id + "." + kind, nil
}

// EventsStreamSubjects are the subjects EventsStream captures.
func EventsStreamSubjects() []string {
	return []string{EventsSubjectPrefix + ".>", QuarantineSubject, DeadLetterSubjectPrefix + ".>"}
}

// WorkerEventTypes are the event-type filters of WorkerConsumer: what can
// settle or fail an encoding.
func WorkerEventTypes() []string {
	return []string{"acs_credential.*", "access_method.*", "acs_encoder.removed"}
}

// WorkerFilterSubjects are WorkerConsumer's filter subjects, in every
// workspace.
func WorkerFilterSubjects() []string {
	types := WorkerEventTypes()
	out := make([]string, len(types))
	for i, t := range types {
		out[i] = EventsSubjectPrefix + ".*." + t
	}
	return out
}

// DeadLetterSubject is where consumer puts the events it gave up on.
func DeadLetterSubject(consumer string) string { return DeadLetterSubjectPrefix + "." + consumer }

// OutcomeSubject returns encodings.<workspaceID>.<status>, failing with
// ErrInvalidToken unless both are valid tokens.
func OutcomeSubject(workspaceID, status string) (string, error) {
	if !ValidToken(workspaceID) || !ValidToken(status) {
		return "", fmt.Errorf("outcome subject for %q/%q: %w", truncate(workspaceID), truncate(status), ErrInvalidToken)
	}
	return OutcomesSubjectPrefix + "." + workspaceID + "." + status, nil
}
