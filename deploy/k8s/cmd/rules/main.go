// Command rules prints the PrometheusRule objects of a kustomization (by
// default the production overlay) as a plain Prometheus rules file: what
// promtool checks and tests (make test-alerts), and what a Prometheus
// without the Prometheus Operator loads with rule_files.
//
//	go run ./deploy/k8s/cmd/rules > rules.yml
//	go run ./deploy/k8s/cmd/rules -k deploy/k8s/overlays/production -o rules.yml
//
// It renders the kustomization with the kustomize library, as
// deploy/k8s's tests do, decodes each PrometheusRule strictly and writes
// its groups unchanged. A field a Prometheus rules file has no place for
// (partial_response_strategy, which only Thanos reads) is refused rather
// than dropped.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// File is a Prometheus rules file (rule_files:), in the field names and
// order of Prometheus's rulefmt.
type File struct {
	Groups []Group `json:"groups" yaml:"groups"`
}

// Group is one rule group of a File.
type Group struct {
	Name        string            `json:"name" yaml:"name"`
	Interval    string            `json:"interval,omitempty" yaml:"interval,omitempty"`
	QueryOffset string            `json:"query_offset,omitempty" yaml:"query_offset,omitempty"`
	Limit       int               `json:"limit,omitempty" yaml:"limit,omitempty"`
	Labels      map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Rules       []Rule            `json:"rules" yaml:"rules"`
}

// Rule is one alerting or recording rule of a Group.
type Rule struct {
	Record        string            `json:"record,omitempty" yaml:"record,omitempty"`
	Alert         string            `json:"alert,omitempty" yaml:"alert,omitempty"`
	Expr          string            `json:"expr" yaml:"expr"`
	For           string            `json:"for,omitempty" yaml:"for,omitempty"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty" yaml:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty" yaml:"annotations,omitempty"`
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "rules:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rules", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("k", filepath.Join("deploy", "k8s", "overlays", "production"), "the kustomization to render")
	out := fs.String("o", "", "write the rules file here instead of to standard output")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: rules [-k kustomization] [-o file]\n\nPrints the kustomization's PrometheusRule groups as a Prometheus rules file.\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	f, err := Render(*dir)
	if err != nil {
		return err
	}
	raw, err := yaml.Marshal(f)
	if err != nil {
		return err
	}
	raw = append([]byte("# Rendered by `go run ./deploy/k8s/cmd/rules -k "+filepath.ToSlash(*dir)+"` from its PrometheusRule objects; do not edit.\n"), raw...)
	if *out == "" {
		_, err = stdout.Write(raw)
		return err
	}
	return os.WriteFile(*out, raw, 0o644)
}

// Render runs kustomize on dir and returns the groups of every
// PrometheusRule it renders, in the order kustomize emits them.
func Render(dir string) (*File, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	f := &File{}
	for _, res := range resMap.Resources() {
		if res.GetKind() != "PrometheusRule" {
			continue
		}
		if v := res.GetApiVersion(); v != monitoringv1.SchemeGroupVersion.String() {
			return nil, fmt.Errorf("PrometheusRule %s: apiVersion %s, want %s", res.GetName(), v, monitoringv1.SchemeGroupVersion)
		}
		raw, err := res.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("PrometheusRule %s: %w", res.GetName(), err)
		}
		var pr monitoringv1.PrometheusRule
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&pr); err != nil {
			return nil, fmt.Errorf("PrometheusRule %s: %w", res.GetName(), err)
		}
		for _, g := range pr.Spec.Groups {
			group, err := convert(g)
			if err != nil {
				return nil, fmt.Errorf("PrometheusRule %s: group %s: %w", pr.Name, g.Name, err)
			}
			f.Groups = append(f.Groups, group)
		}
	}
	if len(f.Groups) == 0 {
		return nil, fmt.Errorf("%s renders no PrometheusRule with groups", dir)
	}
	return f, nil
}

func convert(g monitoringv1.RuleGroup) (Group, error) {
	if g.PartialResponseStrategy != "" {
		return Group{}, errors.New("partial_response_strategy is Thanos's; a Prometheus rules file has no such field")
	}
	out := Group{Name: g.Name, Labels: g.Labels}
	if g.Interval != nil {
		out.Interval = string(*g.Interval)
	}
	if g.QueryOffset != nil {
		out.QueryOffset = string(*g.QueryOffset)
	}
	if g.Limit != nil {
		out.Limit = *g.Limit
	}
	for _, r := range g.Rules {
		rule := Rule{Record: r.Record, Alert: r.Alert, Expr: r.Expr.String(), Labels: r.Labels, Annotations: r.Annotations}
		if r.For != nil {
			rule.For = string(*r.For)
		}
		if r.KeepFiringFor != nil {
			rule.KeepFiringFor = string(*r.KeepFiringFor)
		}
		out.Rules = append(out.Rules, rule)
	}
	return out, nil
}
