package k8s_test

import (
	"errors"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// kustomizations are every directory an operator may `kubectl apply -k`.
var kustomizations = []string{
	"namespace",
	"overlays/dev",
	"overlays/production",
	"overlays/existing-nats",
	"nats",
}

// rendered is one kustomization's output, decoded.
type rendered struct {
	Deployments     map[string]*appsv1.Deployment
	StatefulSets    map[string]*appsv1.StatefulSet
	Services        map[string]*corev1.Service
	ConfigMaps      map[string]*corev1.ConfigMap
	Secrets         map[string]*corev1.Secret
	Namespaces      map[string]*corev1.Namespace
	Ingresses       map[string]*networkingv1.Ingress
	NetworkPolicies map[string]*networkingv1.NetworkPolicy
	HPAs            map[string]*autoscalingv2.HorizontalPodAutoscaler
	PDBs            map[string]*policyv1.PodDisruptionBudget
	ServiceMonitors map[string]*monitoringv1.ServiceMonitor
	Rules           map[string]*monitoringv1.PrometheusRule
}

// render runs kustomize on dir (relative to this package) and decodes every
// object strictly: an unknown field, a wrong apiVersion or a kind nobody
// expects fails the test.
func render(t *testing.T, dir string) *rendered {
	t.Helper()
	return renderFS(t, filesys.MakeFsOnDisk(), filepath.FromSlash(dir))
}

// renderComposed renders a kustomization that is not in the tree, as an
// operator's own would be (one that adds a component to a directory here):
// files, by slash path relative to this package, are laid over an
// in-memory copy of it, and dir is rendered there.
func renderComposed(t *testing.T, files map[string]string, dir string) *rendered {
	t.Helper()
	const root = "/k8s"
	fs := filesys.MakeFsInMemory()
	err := filepath.WalkDir(".", func(p string, d iofs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".go") {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return fs.WriteFile(path.Join(root, filepath.ToSlash(p)), raw)
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, content := range files {
		if err := fs.WriteFile(path.Join(root, p), []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	return renderFS(t, fs, path.Join(root, dir))
}

// renderFS is render on any file system.
func renderFS(t *testing.T, fs filesys.FileSystem, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(fs, dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := &rendered{
		Deployments: map[string]*appsv1.Deployment{}, StatefulSets: map[string]*appsv1.StatefulSet{},
		Services: map[string]*corev1.Service{}, ConfigMaps: map[string]*corev1.ConfigMap{},
		Secrets: map[string]*corev1.Secret{}, Namespaces: map[string]*corev1.Namespace{},
		Ingresses: map[string]*networkingv1.Ingress{}, NetworkPolicies: map[string]*networkingv1.NetworkPolicy{},
		HPAs: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, PDBs: map[string]*policyv1.PodDisruptionBudget{},
		ServiceMonitors: map[string]*monitoringv1.ServiceMonitor{}, Rules: map[string]*monitoringv1.PrometheusRule{},
	}
	for _, res := range resMap.Resources() {
		raw, err := res.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %s/%s: marshal: %v", dir, res.GetKind(), res.GetName(), err)
		}
		kind, apiVersion, name := res.GetKind(), res.GetApiVersion(), res.GetName()
		var into any
		switch kind + " " + apiVersion {
		case "Deployment apps/v1":
			into = put(r.Deployments, name)
		case "StatefulSet apps/v1":
			into = put(r.StatefulSets, name)
		case "Service v1":
			into = put(r.Services, name)
		case "ConfigMap v1":
			into = put(r.ConfigMaps, name)
		case "Secret v1":
			into = put(r.Secrets, name)
		case "Namespace v1":
			into = put(r.Namespaces, name)
		case "Ingress networking.k8s.io/v1":
			into = put(r.Ingresses, name)
		case "NetworkPolicy networking.k8s.io/v1":
			into = put(r.NetworkPolicies, name)
		case "HorizontalPodAutoscaler autoscaling/v2":
			into = put(r.HPAs, name)
		case "PodDisruptionBudget policy/v1":
			into = put(r.PDBs, name)
		case "ServiceMonitor monitoring.coreos.com/v1":
			into = put(r.ServiceMonitors, name)
		case "PrometheusRule monitoring.coreos.com/v1":
			into = put(r.Rules, name)
		default:
			t.Fatalf("%s: %s %s/%s: no check knows this kind and apiVersion", dir, apiVersion, kind, name)
		}
		if err := decodeStrict(raw, into); err != nil {
			t.Errorf("%s: %s/%s does not decode strictly into its %s type: %v", dir, kind, name, apiVersion, err)
		}
	}
	return r
}

// put makes a new T under name and returns it for decoding.
func put[T any](m map[string]*T, name string) *T {
	v := new(T)
	m[name] = v
	return v
}

// decodeStrict decodes as the API server does in strict mode: field names
// match case-sensitively, and an unknown or duplicate field is an error.
func decodeStrict(raw []byte, into any) error {
	strict, err := k8sjson.UnmarshalStrict(raw, into)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func TestEveryKustomizationRendersStrictly(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			if len(r.Deployments)+len(r.StatefulSets)+len(r.Namespaces) == 0 {
				t.Fatalf("%s renders nothing", dir)
			}
		})
	}
}

// TestStrictDecodingRejectsUnknownFields keeps the check above honest: a
// misspelt field must fail, not vanish.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	cases := []struct{ Name, JSON string }{
		{"unknown field", `{"spec":{"template":{"spec":{"containers":[{"name":"x","readinessProbe":{"httpGet":{"path":"/readyz","prot":"admin"}}}]}}}}`},
		{"field in the wrong case", `{"spec":{"template":{"spec":{"containers":[{"name":"x","READINESSPROBE":{}}]}}}}`},
		{"duplicate field", `{"spec":{"replicas":1,"replicas":2}}`},
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if err := decodeStrict([]byte(c.JSON), new(appsv1.Deployment)); err == nil {
				t.Fatalf("%s decoded without error", c.JSON)
			}
		})
	}
}
