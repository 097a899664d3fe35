// Package k8s holds cardwire's Kubernetes manifests (kustomize base, overlays,
// and the NATS cluster). It has no code; its tests render every kustomization
// with the kustomize library, decode each object strictly into its
// Kubernetes type, and check the properties the README promises: probes on
// the admin paths, only /webhooks/seam public, hardened non-root containers,
// secrets read from files (WORKSPACES_FILE from a Secret volume the kubelet
// can update, without the single-workspace variables it replaces), ports
// that match the binaries, and alerts on metrics that exist. With
// components/subscriber-access they also run a real nats-server on the
// configuration it renders and hold the subscriber user to its rights.
// cmd/rules prints the production PrometheusRule as a plain Prometheus
// rules file, for promtool and a real Prometheus (make test-alerts), and
// alerts/tests.yml holds the alerts' promtool unit tests.
package k8s
