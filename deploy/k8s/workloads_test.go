package k8s_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/cardwire/cardwire/internal/admin"
)

// binary is what a cardwire Deployment must agree with: the addresses the
// binary listens on (variable → container port name) and the secrets it
// must read from files.
type binary struct {
	Deployment string
	Listen     map[string]string
	Secrets    []string
}

var binaries = []binary{
	{
		Deployment: "webhook-receiver",
		Listen:     map[string]string{"RECEIVER_ADDR": "http", "ADMIN_ADDR": "admin"},
		Secrets:    []string{"SEAM_WEBHOOK_SECRET"},
	},
	{
		Deployment: "worker",
		Listen:     map[string]string{"WORKER_API_ADDR": "api", "ADMIN_ADDR": "admin"},
		Secrets:    []string{"SEAM_API_KEY", "WORKER_API_TOKEN"},
	},
}

// cardwireOverlays deploy the receiver and the worker.
var cardwireOverlays = []string{"overlays/dev", "overlays/production", "overlays/existing-nats"}

// secretVariables may never be set as plain values or from secretKeyRef:
// they are mounted files read through *_FILE.
var secretVariables = []string{"SEAM_WEBHOOK_SECRET", "SEAM_API_KEY", "WORKER_API_TOKEN", "NATS_CREDS"}

// singleWorkspaceVariables are what WORKSPACES_FILE replaces; a binary given
// both refuses to start.
var singleWorkspaceVariables = []string{
	"SEAM_WEBHOOK_SECRET", "SEAM_WEBHOOK_SECRET_FILE",
	"SEAM_API_KEY", "SEAM_API_KEY_FILE", "SEAM_WORKSPACE_ID",
	"WORKER_API_TOKEN", "WORKER_API_TOKEN_FILE",
}

func TestCardwireWorkloads(t *testing.T) {
	adminPaths := adminHandler(t)
	for _, dir := range cardwireOverlays {
		r := render(t, dir)
		for _, b := range binaries {
			t.Run(dir+"/"+b.Deployment, func(t *testing.T) {
				d, ok := r.Deployments[b.Deployment]
				if !ok {
					t.Fatalf("no Deployment %q", b.Deployment)
				}
				spec := d.Spec.Template.Spec
				if len(spec.Containers) != 1 {
					t.Fatalf("want one container, got %d", len(spec.Containers))
				}
				c := spec.Containers[0]
				env := containerEnv(t, r, c)

				t.Run("ports match the listen addresses", func(t *testing.T) {
					for variable, portName := range b.Listen {
						addr, ok := env[variable]
						if !ok {
							t.Errorf("%s is not set; the binary's default would be a guess here", variable)
							continue
						}
						_, p, err := net.SplitHostPort(addr)
						if err != nil {
							t.Errorf("%s=%q: %v", variable, addr, err)
							continue
						}
						want, _ := strconv.Atoi(p)
						if got := containerPort(c, intstr.FromString(portName)); got != int32(want) {
							t.Errorf("container port %q is %d but %s listens on %d", portName, got, variable, want)
						}
					}
				})

				t.Run("probes hit the admin paths on the admin port", func(t *testing.T) {
					probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
					want := map[string]string{"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"}
					for name, p := range probes {
						if p == nil || p.HTTPGet == nil {
							t.Errorf("%s probe: want an httpGet probe", name)
							continue
						}
						if got := containerPort(c, p.HTTPGet.Port); got == 0 || got != containerPort(c, intstr.FromString("admin")) {
							t.Errorf("%s probe port %s is not the admin port", name, p.HTTPGet.Port.String())
						}
						if p.HTTPGet.Path != want[name] {
							t.Errorf("%s probe path %q, want %q", name, p.HTTPGet.Path, want[name])
						}
						if code := adminPaths(p.HTTPGet.Path); code != http.StatusOK {
							t.Errorf("%s probe: the admin handler answers %s with %d", name, p.HTTPGet.Path, code)
						}
					}
				})

				t.Run("hardened", func(t *testing.T) {
					checkRestricted(t, spec)
					if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
						t.Error("the service account token is mounted; cardwire never calls the Kubernetes API")
					}
				})

				t.Run("resources", func(t *testing.T) {
					checkMemoryLimit(t, c, env)
					for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
						req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
						if req.IsZero() || lim.IsZero() {
							t.Errorf("%s: want a request and a limit, got %q / %q", res, req.String(), lim.String())
						} else if req.Cmp(lim) > 0 {
							t.Errorf("%s: request %s above limit %s", res, req.String(), lim.String())
						}
					}
				})

				t.Run("secrets are files", func(t *testing.T) {
					required := b.Secrets
					if _, ok := env["WORKSPACES_FILE"]; ok {
						required = []string{"WORKSPACES"} // TestWorkspacesFile checks the rest
					}
					checkSecretsAreFiles(t, r, spec, c, env, required, dir == "overlays/existing-nats")
				})

				t.Run("graceful termination", func(t *testing.T) {
					if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
						t.Fatal("want a preStop sleep so endpoints are removed before SIGTERM")
					}
					pause := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
					if pause <= 0 {
						t.Errorf("preStop sleep %s", pause)
					}
					drain, err := time.ParseDuration(env["SHUTDOWN_TIMEOUT"])
					if err != nil {
						t.Fatalf("SHUTDOWN_TIMEOUT=%q: %v", env["SHUTDOWN_TIMEOUT"], err)
					}
					if spec.TerminationGracePeriodSeconds == nil {
						t.Fatal("terminationGracePeriodSeconds unset (30s default)")
					}
					grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
					if grace <= pause+drain {
						t.Errorf("terminationGracePeriodSeconds %s must exceed preStop %s + SHUTDOWN_TIMEOUT %s", grace, pause, drain)
					}
				})

				t.Run("autoscaled and budgeted", func(t *testing.T) {
					checkHPA(t, r, b.Deployment)
					// cardwire's pods are unready while NATS is down; they
					// must not block the node drain that may be the fix.
					p := checkPDB(t, r, d.Spec.Template.Labels)
					if p.Spec.UnhealthyPodEvictionPolicy == nil || *p.Spec.UnhealthyPodEvictionPolicy != policyv1.AlwaysAllow {
						t.Errorf("PodDisruptionBudget %s: want unhealthyPodEvictionPolicy AlwaysAllow", p.Name)
					}
				})
			})
		}
		t.Run(dir+"/services", func(t *testing.T) { checkServices(t, r) })
		t.Run(dir+"/ingress", func(t *testing.T) { checkIngress(t, r, dir == "overlays/dev") })
		t.Run(dir+"/network policies", func(t *testing.T) { checkNetworkPolicies(t, r) })
		t.Run(dir+"/service monitors", func(t *testing.T) {
			if dir == "overlays/dev" {
				// A laptop cluster may lack the Prometheus Operator's CRDs.
				if len(r.ServiceMonitors)+len(r.Rules) > 0 {
					t.Error("the dev overlay must apply without the Prometheus Operator's CRDs")
				}
				return
			}
			checkServiceMonitors(t, r)
		})
	}
}

// TestProductionScale is what the production overlay adds: several pods
// of each (the autoscaler's minimum; a Deployment's own replicas would reset
// the autoscaler on every apply), and 3 replicas for every stream and the
// bucket.
func TestProductionScale(t *testing.T) {
	for _, dir := range []string{"overlays/production", "overlays/existing-nats"} {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			for _, b := range binaries {
				if d := r.Deployments[b.Deployment]; d.Spec.Replicas != nil {
					t.Errorf("%s: sets replicas (%d) although an autoscaler owns them", b.Deployment, *d.Spec.Replicas)
				}
				if h := findHPA(r, b.Deployment); h == nil || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
					t.Errorf("%s: the autoscaler must keep at least 2 replicas", b.Deployment)
				}
			}
			recv := containerEnv(t, r, r.Deployments["webhook-receiver"].Spec.Template.Spec.Containers[0])
			work := containerEnv(t, r, r.Deployments["worker"].Spec.Template.Spec.Containers[0])
			if recv["SEAM_EVENTS_REPLICAS"] != "3" {
				t.Errorf("SEAM_EVENTS_REPLICAS=%q, want 3", recv["SEAM_EVENTS_REPLICAS"])
			}
			if work["ENCODINGS_REPLICAS"] != "3" {
				t.Errorf("ENCODINGS_REPLICAS=%q, want 3 (the bucket and the outcome stream)", work["ENCODINGS_REPLICAS"])
			}
			if len(r.Namespaces) > 0 {
				t.Error("the overlay owns a Namespace: deleting it would delete NATS and its volumes too (deploy/k8s/namespace owns it)")
			}
		})
	}
}

// TestNamespace: one kustomization owns the namespace cardwire and NATS
// share, and it enforces the restricted Pod Security Standard, which every
// pod here is held to (checkRestricted).
func TestNamespace(t *testing.T) {
	ns := render(t, "namespace").Namespaces
	prod := render(t, "overlays/production")
	nats := render(t, "nats")
	want := prod.Deployments["worker"].Namespace
	if ns[want] == nil || len(ns) != 1 {
		t.Fatalf("deploy/k8s/namespace renders %v, want only %q", ns, want)
	}
	if got := nats.StatefulSets["nats"].Namespace; got != want {
		t.Errorf("NATS goes to namespace %q, cardwire to %q", got, want)
	}
	if ns[want].Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s does not enforce the restricted Pod Security Standard", want)
	}
	if len(nats.Namespaces) > 0 {
		t.Error("deploy/k8s/nats owns a Namespace")
	}
}

// adminHandler returns a function answering the status the real admin
// handler gives a path.
func adminHandler(t *testing.T) func(string) int {
	t.Helper()
	h, err := admin.Handler(admin.Options{Gatherer: prometheus.NewRegistry(), CheckTimeout: time.Second, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return func(p string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		return rec.Code
	}
}

// containerEnv is the container's environment as the binary sees it:
// ConfigMaps from envFrom, then env (later wins). Values from the downward
// API show as "<fieldRef>" or "<resourceFieldRef>".
func containerEnv(t *testing.T, r *rendered, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			continue // secretRef is rejected by checkSecretsAreFiles
		}
		cm, ok := r.ConfigMaps[from.ConfigMapRef.Name]
		if !ok {
			t.Fatalf("container %s: envFrom ConfigMap %q is not in the build", c.Name, from.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			env[from.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = "<fieldRef>"
		case e.ValueFrom.ResourceFieldRef != nil:
			env[e.Name] = "<resourceFieldRef>"
		default:
			env[e.Name] = "<other>"
		}
	}
	return env
}

// containerPort resolves a port by name or number; 0 when c has no such port.
func containerPort(c corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

// checkRestricted holds a pod to the restricted Pod Security Standard, plus
// a read-only root filesystem.
func checkRestricted(t *testing.T, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("host namespaces are shared")
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s is a hostPath", v.Name)
		}
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", c.Name)
			continue
		}
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		if !nonRoot {
			t.Errorf("%s: runAsNonRoot is not true", c.Name)
		}
		uid := psc.RunAsUser
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if uid == nil || *uid == 0 {
			t.Errorf("%s: runs without a non-zero runAsUser", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: privileged", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem is writable", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: capabilities must drop ALL and add none", c.Name)
		}
		seccomp := psc.SeccompProfile
		if sc.SeccompProfile != nil {
			seccomp = sc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: seccomp profile is not RuntimeDefault", c.Name)
		}
	}
}

// checkSecretsAreFiles: no secret is an env value, an envFrom Secret or a
// secretKeyRef; each required secret's *_FILE names a file that a mounted
// Secret volume provides, readable by the owner and group only.
func checkSecretsAreFiles(t *testing.T, r *rendered, spec corev1.PodSpec, c corev1.Container, env map[string]string, required []string, natsCreds bool) {
	t.Helper()
	for _, from := range c.EnvFrom {
		if from.SecretRef != nil {
			t.Errorf("envFrom Secret %q puts secrets in the environment", from.SecretRef.Name)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("%s comes from secretKeyRef; mount it and use %s_FILE", e.Name, strings.TrimSuffix(e.Name, "_FILE"))
		}
	}
	for _, name := range secretVariables {
		if _, ok := env[name]; ok {
			t.Errorf("%s is set as a value (ConfigMap or env); it must be a file read through %s_FILE", name, name)
		}
	}
	if natsCreds {
		required = append(slices.Clone(required), "NATS_CREDS")
	}
	for _, name := range required {
		file, ok := env[name+"_FILE"]
		if !ok {
			t.Errorf("%s_FILE is not set", name)
			continue
		}
		if err := mountedSecretFile(r, spec, c, file); err != nil {
			t.Errorf("%s_FILE=%s: %v", name, file, err)
		}
	}
	// A Secret volume no *_FILE reads is a leftover (a component that
	// replaced the variable but not its volume): it only keeps the pod from
	// starting when its Secret is not created.
	for _, v := range spec.Volumes {
		if v.Secret == nil {
			continue
		}
		read := false
		for name, file := range env {
			if _, in, _, ok := volumeAt(spec, c, file); ok && in.Name == v.Name && strings.HasSuffix(name, "_FILE") {
				read = true
			}
		}
		if !read {
			t.Errorf("Secret volume %s (Secret %s) holds no file that a *_FILE variable names", v.Name, v.Secret.SecretName)
		}
	}
}

// mountedSecretFile: file is in a Secret volume, mounted read-only and
// without subPath, readable by the pod's group only, and (when the build
// generates the Secret) the Secret has the key behind it.
func mountedSecretFile(r *rendered, spec corev1.PodSpec, c corev1.Container, file string) error {
	m, v, rel, ok := volumeAt(spec, c, file)
	switch {
	case !ok:
		return fmt.Errorf("no volume is mounted there")
	case !m.ReadOnly:
		return fmt.Errorf("mount %s is not read-only", m.MountPath)
	case m.SubPath != "" || m.SubPathExpr != "":
		// The kubelet updates a Secret volume by swapping a symlink; a
		// subPath mount stays on the files it started with.
		return fmt.Errorf("mount %s uses subPath, so it never sees an update of the Secret", m.MountPath)
	case v.Secret == nil:
		return fmt.Errorf("volume %s is not a Secret", v.Name)
	case v.Secret.DefaultMode == nil:
		return fmt.Errorf("Secret volume %s has no defaultMode (0644: readable by others)", v.Name)
	}
	if mode := *v.Secret.DefaultMode; mode&0o007 != 0 || mode&0o040 == 0 {
		return fmt.Errorf("Secret volume %s: defaultMode %#o, want group-readable and nothing for others", v.Name, mode)
	}
	// The files are root-owned with the pod's fsGroup as group; the non-root
	// process reads them through that group.
	if spec.SecurityContext == nil || spec.SecurityContext.FSGroup == nil {
		return fmt.Errorf("Secret volume %s: no fsGroup, so the non-root process cannot read it", v.Name)
	}
	// A Secret generated in this build (dev) must have the key.
	hasKey := func(key string) error {
		if s, generated := r.Secrets[v.Secret.SecretName]; generated {
			if _, has := s.Data[key]; !has {
				return fmt.Errorf("Secret %s has no key %s", s.Name, key)
			}
		}
		return nil
	}
	if len(v.Secret.Items) == 0 {
		// The whole Secret: each key is a file of that name.
		if strings.Contains(rel, "/") {
			return fmt.Errorf("Secret volume %s has every key at its top level, not %s", v.Name, rel)
		}
		return hasKey(rel)
	}
	for _, it := range v.Secret.Items {
		if path.Clean(it.Path) == rel {
			return hasKey(it.Key)
		}
	}
	return fmt.Errorf("Secret volume %s has no item at %s", v.Name, rel)
}

// volumeAt finds the mount of c that file lies under (or is, for a subPath
// mount of one file), its volume, and the file's path inside the volume.
func volumeAt(spec corev1.PodSpec, c corev1.Container, file string) (corev1.VolumeMount, corev1.Volume, string, bool) {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok && file == m.MountPath {
			rel, ok = m.SubPath, true
		}
		if !ok {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name {
				return m, v, rel, true
			}
		}
	}
	return corev1.VolumeMount{}, corev1.Volume{}, "", false
}

// checkMemoryLimit: GOMEMLIMIT is set below the memory limit, leaving the
// GC room to act before the kernel's OOM killer.
func checkMemoryLimit(t *testing.T, c corev1.Container, env map[string]string) {
	t.Helper()
	soft, err := goMemLimit(env["GOMEMLIMIT"])
	if err != nil {
		t.Fatalf("GOMEMLIMIT=%q: %v", env["GOMEMLIMIT"], err)
	}
	hard := c.Resources.Limits.Memory().Value()
	if soft >= hard || soft < hard*3/4 {
		t.Errorf("GOMEMLIMIT %d bytes, memory limit %d: want between 75 %% and 100 %% of the limit", soft, hard)
	}
}

// goMemLimit parses a GOMEMLIMIT value as the Go runtime does (a byte count
// with an optional B, KiB, MiB, GiB or TiB suffix).
func goMemLimit(s string) (int64, error) {
	for i, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if n, ok := strings.CutSuffix(s, unit); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v << (10 * (i + 1)), err
		}
	}
	return strconv.ParseInt(strings.TrimSuffix(s, "B"), 10, 64)
}

func findHPA(r *rendered, deployment string) *autoscalingv2.HorizontalPodAutoscaler {
	for _, h := range r.HPAs {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == deployment {
			return h
		}
	}
	return nil
}

func checkHPA(t *testing.T, r *rendered, deployment string) {
	t.Helper()
	h := findHPA(r, deployment)
	if h == nil {
		t.Fatalf("no HorizontalPodAutoscaler scales Deployment %s", deployment)
	}
	cpu := false
	for _, m := range h.Spec.Metrics {
		if m.Resource != nil && m.Resource.Name == corev1.ResourceCPU && m.Resource.Target.AverageUtilization != nil {
			cpu = true
		}
	}
	if !cpu {
		t.Error("the autoscaler does not scale on CPU utilisation")
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
		t.Errorf("replica bounds %v..%d", h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
}

// checkPDB finds the PodDisruptionBudget of the pods with podLabels.
func checkPDB(t *testing.T, r *rendered, podLabels map[string]string) *policyv1.PodDisruptionBudget {
	t.Helper()
	for _, p := range r.PDBs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Fatalf("PodDisruptionBudget %s: %v", p.Name, err)
		}
		if sel.Matches(labels.Set(podLabels)) {
			return p
		}
	}
	t.Fatalf("no PodDisruptionBudget selects pods %v", podLabels)
	return nil
}
