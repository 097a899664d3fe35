package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

const (
	production = "../../overlays/production"
	testsFile  = "../../alerts/tests.yml"
)

// unitTests is promtool's unit-test file (promtool test rules), every
// field Prometheus 2.42 reads: decoding it strictly catches a misspelt key,
// which promtool would also refuse, here in make test.
type unitTests struct {
	RuleFiles          []string `yaml:"rule_files"`
	EvaluationInterval string   `yaml:"evaluation_interval"`
	GroupEvalOrder     []string `yaml:"group_eval_order"`
	Tests              []struct {
		Name           string            `yaml:"name"`
		Interval       string            `yaml:"interval"`
		ExternalLabels map[string]string `yaml:"external_labels"`
		ExternalURL    string            `yaml:"external_url"`
		InputSeries    []struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		} `yaml:"input_series"`
		AlertRuleTests []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromQLExprTests []struct {
			Expr       string `yaml:"expr"`
			EvalTime   string `yaml:"eval_time"`
			ExpSamples []struct {
				Labels string  `yaml:"labels"`
				Value  float64 `yaml:"value"`
			} `yaml:"exp_samples"`
		} `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

func decodeStrict(t *testing.T, raw []byte, into any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		t.Fatal(err)
	}
}

// TestEveryAlertIsTested: each alert of the production rules has a case
// in deploy/k8s/alerts/tests.yml that makes it fire and one where it must
// not, and every case names an alert that exists, so that a new alert
// without tests (or a renamed one) fails make test, not only make
// test-alerts.
func TestEveryAlertIsTested(t *testing.T) {
	f, err := Render(production)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(testsFile)
	if err != nil {
		t.Fatal(err)
	}
	var ut unitTests
	decodeStrict(t, raw, &ut)
	// make test-alerts writes the rendered rules next to a copy of the
	// tests under this name.
	if !slices.Equal(ut.RuleFiles, []string{"rules.yml"}) {
		t.Errorf("%s: rule_files %q, want [rules.yml] (what scripts/test-alerts.sh renders next to it)", testsFile, ut.RuleFiles)
	}
	alerts := map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts[r.Alert] = true
			}
		}
	}
	fires, quiet := map[string]int{}, map[string]int{}
	for _, tg := range ut.Tests {
		if tg.Name == "" {
			t.Errorf("%s: a test without a name", testsFile)
		}
		for _, c := range tg.AlertRuleTests {
			if !alerts[c.Alertname] {
				t.Errorf("%s: test %q checks %q, which the production rules do not have", testsFile, tg.Name, c.Alertname)
			}
			if len(c.ExpAlerts) > 0 {
				fires[c.Alertname]++
			} else {
				quiet[c.Alertname]++
			}
		}
	}
	for a := range alerts {
		if fires[a] == 0 {
			t.Errorf("%s: no test makes %s fire (an alert_rule_test with exp_alerts)", testsFile, a)
		}
		if quiet[a] == 0 {
			t.Errorf("%s: no test checks that %s does not fire (an alert_rule_test with exp_alerts: [])", testsFile, a)
		}
	}
	if len(alerts) < 10 {
		t.Fatalf("only %d alerts rendered from %s", len(alerts), production)
	}
}

// TestRunWritesTheRules: -o writes what Render returns, as a rules file
// (groups: of name and rules:, each rule's expr a string), with a header
// that says where it came from.
func TestRunWritesTheRules(t *testing.T) {
	out := filepath.Join(t.TempDir(), "rules.yml")
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-k", production, "-o", out}, &stdout, &stderr); err != nil {
		t.Fatalf("%v (%s)", err, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("with -o, standard output got %q", stdout.String())
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), "# Rendered by `go run ./deploy/k8s/cmd/rules -k "+production+"`") {
		t.Errorf("no header naming the source: %q", strings.SplitN(string(raw), "\n", 2)[0])
	}
	var got File
	decodeStrict(t, raw, &got)
	want, err := Render(production)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("the file does not decode to what Render returns:\n%s", raw)
	}
	for _, g := range got.Groups {
		for _, r := range g.Rules {
			if strings.TrimSpace(r.Expr) == "" || (r.Alert == "") == (r.Record == "") {
				t.Errorf("group %s: a rule needs an expr and exactly one of alert and record: %+v", g.Name, r)
			}
		}
	}

	// Standard output without -o: the same bytes.
	stdout.Reset()
	if err := run([]string{"-k", production}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stdout.Bytes(), raw) {
		t.Error("standard output differs from the -o file")
	}
}

func TestRunRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no rules", []string{"-k", "../../overlays/dev"}, "renders no PrometheusRule"},
		{"no kustomization", []string{"-k", t.TempDir()}, "kustomize build"},
		{"an argument", []string{"-k", production, "extra"}, "unexpected arguments"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(c.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("wrote %q despite the error", stdout.String())
			}
		})
	}
}
