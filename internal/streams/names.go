package streams

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
)

// EventsStreamSubjects are the subjects EventsStream captures.
func EventsStreamSubjects() []string {
	return []string{EventsSubjectPrefix + ".>", QuarantineSubject}
}
