package docs_test

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/streams"
)

// TestAsyncAPINamesMatchStreams: every channel address and header name in
// asyncapi.yaml is built from the constants in internal/streams, so a
// renamed subject or header fails here instead of drifting silently.
func TestAsyncAPINamesMatchStreams(t *testing.T) {
	api := loadAsyncAPI(t)
	require.Equal(t, "3.0.0", api.raw["asyncapi"])

	eventHeaders := []string{jetstream.MsgIDHeader, jetstream.ExpectedStreamHeader, streams.HeaderEventID,
		streams.HeaderEventType, streams.HeaderWorkspaceID, streams.HeaderWebhookID, streams.HeaderWebhookTimestamp,
		streams.HeaderTraceparent, streams.HeaderRetryOf}
	// A dead letter keeps the event's headers except its message id and
	// expected stream, and adds its own (worker deadLetterTo).
	deadLetterHeaders := slices.DeleteFunc(slices.Clone(eventHeaders), func(h string) bool { return h == jetstream.ExpectedStreamHeader })
	deadLetterHeaders = append(deadLetterHeaders, streams.HeaderDeadLetterReason, streams.HeaderDeadLetterDeliveries,
		streams.HeaderOriginalSubject)
	testCases := []struct {
		Name    string
		Channel string
		Address string
		Message string
		Headers []string
	}{
		{"events", "seamEvents", streams.EventsSubjectPrefix + ".{workspace_id}.{event_type}", "seamEvent", eventHeaders},
		{"quarantine", "quarantine", streams.QuarantineSubject, "quarantined", []string{jetstream.MsgIDHeader,
			jetstream.ExpectedStreamHeader, streams.HeaderWebhookID, streams.HeaderWebhookTimestamp,
			streams.HeaderQuarantineReason, streams.HeaderTraceparent}},
		{"dead letters", "deadLetters", streams.DeadLetterSubjectPrefix + ".{consumer}", "deadLetter", deadLetterHeaders},
		{"outcomes", "outcomes", streams.OutcomesSubjectPrefix + ".{workspace_id}.{status}", "outcome",
			[]string{jetstream.MsgIDHeader, jetstream.ExpectedStreamHeader}},
	}
	var channels, addresses []string
	for _, c := range testCases {
		channels, addresses = append(channels, c.Channel), append(addresses, c.Address)
		t.Run(c.Name, func(t *testing.T) {
			ch := api.at(t, "channels", c.Channel)
			require.Equal(t, c.Address, ch["address"])

			// Each {parameter} of the address is described, and only those.
			var placeholders []string
			for _, m := range regexp.MustCompile(`\{([a-z_]+)\}`).FindAllStringSubmatch(c.Address, -1) {
				placeholders = append(placeholders, m[1])
			}
			params, _ := ch["parameters"].(map[string]any)
			require.ElementsMatch(t, placeholders, keys(params))

			msgs := api.at(t, "channels", c.Channel, "messages")
			require.Len(t, msgs, 1)
			require.Equal(t, "#/components/messages/"+c.Message, msgs[keys(msgs)[0]].(map[string]any)["$ref"])
			require.ElementsMatch(t, c.Headers, api.headerNames(t, c.Message))
			api.headerSchema(t, c.Message) // compiles

			// A JSON payload refers to one of the schemas next to it.
			if p, ok := api.message(t, c.Message)["payload"].(map[string]any)["schema"].(map[string]any); ok {
				ref, _ := p["$ref"].(string)
				require.True(t, strings.HasPrefix(ref, "./schemas/"), "payload $ref %q", ref)
				compileSchema(t, filepath.Clean(ref))
			}

			// A receive operation for it exists.
			found := false
			for _, op := range api.at(t, "operations") {
				op := op.(map[string]any)
				if op["channel"].(map[string]any)["$ref"] == "#/channels/"+c.Channel {
					require.Equal(t, "receive", op["action"], "subscribers only receive")
					found = true
				}
			}
			require.True(t, found, "no operation on channel %s", c.Channel)
		})
	}
	require.ElementsMatch(t, channels, keys(api.at(t, "channels")), "a channel this test does not know")
	require.ElementsMatch(t, []string{streams.WorkerConsumer},
		strs(api.at(t, "channels", "deadLetters", "parameters", "consumer")["enum"]), "the consumers that dead-letter")
	require.ElementsMatch(t, []string{events.QuarantineNotJSON, events.QuarantineInvalidField, events.QuarantineMissingField,
		events.QuarantineInvalidSubject},
		strs(api.at(t, "components", "messages", "quarantined", "headers", "properties", streams.HeaderQuarantineReason)["enum"]))
	require.Equal(t, streams.EventsStream,
		api.at(t, "components", "messages", "seamEvent", "headers", "properties", jetstream.ExpectedStreamHeader)["const"])
	require.Equal(t, streams.OutcomesStream,
		api.at(t, "components", "messages", "outcome", "headers", "properties", jetstream.ExpectedStreamHeader)["const"])
	// Every subject the streams capture has a channel.
	for _, subj := range append(streams.EventsStreamSubjects(), streams.OutcomesSubjectPrefix+".>") {
		prefix := strings.TrimSuffix(subj, ".>")
		require.True(t, slices.ContainsFunc(addresses, func(a string) bool {
			return a == prefix || strings.HasPrefix(a, prefix+".")
		}), "stream subject %s has no channel", subj)
	}
}
