// Package docs holds cardwire's contract with its subscribers: the JSON
// Schemas of the outcome message and of the Seam event envelope
// (schemas/), and the AsyncAPI document of the subjects with their headers
// (asyncapi.yaml). It has no code; its tests keep the documents true by
// checking them against the names in internal/streams and against real
// messages that a real webhook receiver and worker produce on an embedded
// JetStream server.
package docs
