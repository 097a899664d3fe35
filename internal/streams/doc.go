// Package streams is the JetStream contract that the webhook receiver and the
// worker share: stream, bucket and consumer names, subject builders with their
// token checks, header keys, and the create-or-update of what each side owns.
//
// It exists so that the events and encoding packages never import each other
// yet always agree on names; anything another system subscribes to is named
// here and nowhere else.
package streams
