// Package workspaces is the tenancy of one cardwire deployment: which Seam
// workspaces it serves, with each one's webhook secrets and Seam
// credentials, and which API tokens reach which workspaces. It reads and
// validates WORKSPACES_FILE (JSON or YAML), or builds the same view from
// the single-workspace variables, and re-reads the file when it changes
// (Source), keeping the last good configuration when a new one is broken.
//
// Both binaries use it: the receiver to verify an event only with the
// secrets of the workspace it names, the worker to call Seam with each
// workspace's own credentials and to scope API tokens. A Config is
// immutable; a reload swaps it whole.
package workspaces
