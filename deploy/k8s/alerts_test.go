package k8s_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/broker"
	"github.com/cardwire/cardwire/internal/catchup"
	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/worker"
	"github.com/cardwire/cardwire/internal/workspaces"
)

// TestAlertsCoverWhatOperatorsNeed: each concern the README promises an
// alert for has one, and every alert is labelled and explained.
func TestAlertsCoverWhatOperatorsNeed(t *testing.T) {
	r := render(t, "overlays/production")
	concerns := []struct {
		Name string
		Need []string // every string must appear in one alert's expression
	}{
		{"signature failures spiking", []string{"cardwire_receiver_requests_total", `outcome="` + events.OutcomeInvalidSignature + `"`}},
		{"503s, NATS unavailable", []string{"cardwire_receiver_requests_total", `outcome="` + events.OutcomeUnavailable + `"`}},
		{"consumer backlog growing", []string{"cardwire_worker_consumer_pending", "delta("}},
		{"encodings expiring", []string{"cardwire_worker_deadlines_total", `result="expired"`}},
		{"dead-lettered events", []string{"cardwire_worker_events_total", `result="dead_lettered"`}},
		{"no webhooks while encodings pending", []string{"cardwire_receiver_events_total", "cardwire_worker_encodings_pending"}},
		{"WORKSPACES_FILE reload refused", []string{"cardwire_config_last_reload_successful", "== 0"}},
		{"catch-up found events the webhooks missed", []string{"cardwire_catchup_events_total", `result="missed"`, "increase("}},
		{"catch-up checkpoint older than 3 intervals", []string{"time() -", "cardwire_catchup_checkpoint_timestamp_seconds", "> 900"}},
		{"catch-up credentials refused", []string{"cardwire_catchup_runs_total", `result="refused"`}},
	}
	alerts := ruleAlerts(t, r)
	for _, c := range concerns {
		found := false
		for _, a := range alerts {
			if !slices.ContainsFunc(c.Need, func(s string) bool { return !strings.Contains(a.Expr, s) }) {
				found = true
			}
		}
		if !found {
			t.Errorf("no alert for %q (an expression using %q)", c.Name, c.Need)
		}
	}
	for _, a := range alerts {
		if sev := a.Labels["severity"]; sev != "warning" && sev != "critical" {
			t.Errorf("alert %s: severity %q, want warning or critical", a.Name, sev)
		}
		if a.Annotations["summary"] == "" || a.Annotations["description"] == "" {
			t.Errorf("alert %s: needs a summary and a description", a.Name)
		}
		if a.For != "" {
			if _, err := time.ParseDuration(a.For); err != nil {
				t.Errorf("alert %s: for %q: %v", a.Name, a.For, err)
			}
		}
		if strings.Count(a.Expr, "(") != strings.Count(a.Expr, ")") || strings.Count(a.Expr, "{") != strings.Count(a.Expr, "}") {
			t.Errorf("alert %s: unbalanced brackets in %q", a.Name, a.Expr)
		}
		checkTemplates(t, a)
	}
}

// checkTemplates does what promtool check rules does for annotations: each
// one parses as a Prometheus alert template. And each $labels.X it prints
// must survive every "by (…)" of the expression, or it prints empty.
func checkTemplates(t *testing.T, a alert) {
	t.Helper()
	// Prometheus's template functions (their names suffice to parse) and
	// the variables it defines before each annotation.
	funcs := template.FuncMap{}
	for _, f := range []string{"query", "first", "label", "value", "strvalue", "args", "reReplaceAll", "safeHtml",
		"match", "title", "toUpper", "toLower", "graphLink", "tableLink", "sortByLabel", "stripPort", "stripDomain",
		"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp", "toTime",
		"toDuration", "pathPrefix", "externalURL", "parseDuration", "now"} {
		funcs[f] = func(...any) any { return nil }
	}
	const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	by := regexp.MustCompile(`\bby \(([^)]*)\)`)
	used := regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	for name, text := range a.Annotations {
		if _, err := template.New(name).Funcs(funcs).Parse(defs + text); err != nil {
			t.Errorf("alert %s: annotation %s: %v", a.Name, name, err)
		}
		for _, l := range used.FindAllStringSubmatch(text, -1) {
			for _, g := range by.FindAllStringSubmatch(a.Expr, -1) {
				kept := strings.Split(strings.ReplaceAll(g[1], " ", ""), ",")
				if !slices.Contains(kept, l[1]) {
					t.Errorf("alert %s: annotation %s prints $labels.%s, which %q drops", a.Name, name, l[1], g[0])
				}
			}
		}
	}
}

// TestAlertsUseMetricsThatExist builds the receiver's and the worker's
// metrics (the worker's catch-up included) the way the binaries do and
// checks that each cardwire_ name an alert reads is one of them: an alert
// on a misspelt metric never fires.
func TestAlertsUseMetricsThatExist(t *testing.T) {
	reg := binariesRegistry(t)
	metric := regexp.MustCompile(`\bcardwire_[a-z0-9_]+`)
	for _, a := range ruleAlerts(t, render(t, "overlays/production")) {
		for _, name := range metric.FindAllString(a.Expr, -1) {
			if !registered(reg, name) {
				t.Errorf("alert %s reads %s, which neither binary exports", a.Name, name)
			}
		}
	}
	if registered(reg, "cardwire_no_such_metric") {
		t.Fatal("registered() reports a metric that does not exist; the check above proves nothing")
	}
}

type alert struct {
	Name, Expr, For     string
	Labels, Annotations map[string]string
}

func ruleAlerts(t *testing.T, r *rendered) []alert {
	t.Helper()
	var out []alert
	for _, pr := range r.Rules {
		for _, g := range pr.Spec.Groups {
			for _, rule := range g.Rules {
				if rule.Alert == "" {
					continue
				}
				a := alert{Name: rule.Alert, Expr: rule.Expr.String(), Labels: rule.Labels, Annotations: rule.Annotations}
				if rule.For != nil {
					a.For = string(*rule.For)
				}
				out = append(out, a)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no alerts rendered")
	}
	return out
}

// registered reports whether reg has a metric called name (or the histogram
// behind a _bucket/_sum/_count series). A registry refuses a second
// collector with the same name and other help, and that refusal is the
// answer; the probe is unregistered again when it is accepted.
func registered(reg *prometheus.Registry, name string) bool {
	for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: base, Help: "probe " + base})
		if err := reg.Register(probe); err != nil {
			return true
		}
		reg.Unregister(probe)
	}
	return false
}

// binariesRegistry registers every metric of the receiver and the worker on
// one registry, through the same constructors their run() uses, against an
// embedded JetStream server, with a WORKSPACES_FILE.
func binariesRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	srv := natstest.RunJetStream(t)
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	bo := broker.DefaultOptions()
	bo.URL, bo.Name = srv.ClientURL(), "cardwire-metrics-check"
	nc, err := broker.Connect(bo, zerolog.Nop(), reg)
	must(t, "connect", err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	must(t, "jetstream", err)

	verifier, err := events.NewVerifier([]string{"whsec_" + strings.Repeat("QUJD", 8)}, 5*time.Minute)
	must(t, "verifier", err)
	ro := events.DefaultOptions()
	ro.Verifier, ro.Publisher, ro.Registerer = verifier, js, reg
	_, err = events.NewReceiver(ro)
	must(t, "receiver", err)

	must(t, "events stream", streams.EnsureEventsStream(ctx, js, streams.DefaultEventsStreamOptions()))
	owned, err := streams.EnsureWorker(ctx, js, streams.DefaultWorkerOptions())
	must(t, "worker streams", err)
	sopts := seam.DefaultOptions()
	sopts.APIKey, sopts.Registerer = "seam_test_metrics", reg
	client, err := seam.New(sopts)
	must(t, "seam client", err)
	wo := worker.DefaultOptions()
	wo.JS, wo.Owned, wo.Registerer, wo.Seam = js, owned, reg, client
	w, err := worker.New(ctx, wo)
	must(t, "worker", err)
	must(t, "worker start", w.Start(ctx))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	// The worker's catch-up registers its metrics in New; Run is not needed.
	co := catchup.DefaultOptions()
	co.Publisher, co.Registerer, co.Holder = js, reg, "test"
	co.Workspaces = func() []catchup.Workspace { return nil }
	_, err = catchup.New(co)
	must(t, "catch-up", err)

	// Both binaries open WORKSPACES_FILE the same way; its reload metrics
	// exist only when the file is set.
	file := filepath.Join(t.TempDir(), "workspaces.yaml")
	must(t, "workspaces file", os.WriteFile(file, []byte(`workspaces:
  - workspace_id: ws_metrics
    name: Metrics check
    webhook_secrets: ["whsec_`+strings.Repeat("QUJD", 8)+`"]
api_tokens:
  - token_sha256: `+strings.Repeat("ab", 32)+`
    workspaces: ["*"]
`), 0o600))
	_, err = workspaces.Open(workspaces.SourceOptions{Path: file, Interval: time.Minute, Registerer: reg, Log: zerolog.Nop()})
	must(t, "workspaces source", err)
	return reg
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(fmt.Errorf("%s: %w", what, err))
	}
}
