package k8s_test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// TestNATSCluster checks deploy/k8s/nats, alone and with
// components/subscriber-access: three JetStream servers whose configuration
// the real nats-server accepts, with routes that name the StatefulSet's pods
// through the headless Service, and storage on the claimed volume.
func TestNATSCluster(t *testing.T) {
	t.Run("nats", func(t *testing.T) { checkNATSCluster(t, render(t, "nats")) })
	t.Run("nats with components/subscriber-access", func(t *testing.T) { checkNATSCluster(t, renderNATSWithSubscribers(t)) })
}

func checkNATSCluster(t *testing.T, r *rendered) {
	t.Helper()
	sts, ok := r.StatefulSets["nats"]
	if !ok {
		t.Fatal("no StatefulSet nats")
	}
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Fatalf("want 3 servers, got %v", sts.Spec.Replicas)
	}
	headless, ok := r.Services[sts.Spec.ServiceName]
	if !ok || headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Fatalf("Service %q must be headless and publish not-ready addresses so the servers find each other", sts.Spec.ServiceName)
	}
	spec := sts.Spec.Template.Spec
	checkRestricted(t, spec)
	c := spec.Containers[0]
	podName := sts.Name + "-1"
	opts := natsConfig(t, r, podName)

	if opts.ServerName != podName {
		t.Errorf("server_name %q, want the pod name %q (unique per server)", opts.ServerName, podName)
	}
	if !opts.JetStream {
		t.Error("JetStream is off")
	}
	if got := mountPathOf(t, c, "data"); opts.StoreDir != got {
		t.Errorf("JetStream store_dir %q is not the claimed volume's mount %q", opts.StoreDir, got)
	}
	if !slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool { return p.Name == "data" }) {
		t.Error("no volumeClaimTemplate \"data\": JetStream would store on the pod's ephemeral disk")
	}
	if opts.Cluster.Name == "" || opts.Cluster.Port != int(containerPort(c, intstr.FromString("cluster"))) {
		t.Errorf("cluster %q listens on %d, not the container's cluster port", opts.Cluster.Name, opts.Cluster.Port)
	}
	var routes []string
	for _, u := range opts.Routes {
		routes = append(routes, u.Host)
	}
	var want []string
	for i := range 3 {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", sts.Name, i, headless.Name, opts.Cluster.Port))
	}
	if !slices.Equal(routes, want) {
		t.Errorf("routes %q, want %q", routes, want)
	}
	if opts.Port != int(containerPort(c, intstr.FromString("client"))) {
		t.Errorf("clients on %d, container port client is %d", opts.Port, containerPort(c, intstr.FromString("client")))
	}
	if opts.HTTPPort != int(containerPort(c, intstr.FromString("monitor"))) {
		t.Errorf("monitoring on %d, container port monitor is %d", opts.HTTPPort, containerPort(c, intstr.FromString("monitor")))
	}
	// The receiver refuses to start if a body plus headers cannot fit.
	if opts.MaxPayload < 256<<10+4<<10 {
		t.Errorf("max_payload %d is below the receiver's 256 KiB + 4 KiB", opts.MaxPayload)
	}
	if opts.LameDuckDuration <= 0 || spec.TerminationGracePeriodSeconds == nil ||
		int64(opts.LameDuckDuration.Seconds()) >= *spec.TerminationGracePeriodSeconds {
		t.Errorf("lame duck %s must be set and below the grace period %v", opts.LameDuckDuration, spec.TerminationGracePeriodSeconds)
	}
	// The pid file (which lame duck's preStop signals through) must be
	// writable: the root filesystem is not, and nats-server exits if it
	// cannot write it.
	if m, v, _, ok := volumeAt(spec, c, opts.PidFile); !ok || m.ReadOnly || v.EmptyDir == nil {
		t.Errorf("pid_file %q is not on a writable emptyDir mount", opts.PidFile)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil ||
		!slices.Contains(c.Lifecycle.PreStop.Exec.Command, "ldm="+opts.PidFile) {
		t.Errorf("preStop does not put the server in lame duck mode through %s", opts.PidFile)
	}
	// The servers must reach each other's route port.
	routesAdmitted := false
	for _, rule := range r.NetworkPolicies["nats"].Spec.Ingress {
		for _, peer := range rule.From {
			if peer.PodSelector != nil && subset(peer.PodSelector.MatchLabels, sts.Spec.Template.Labels) &&
				slices.ContainsFunc(rule.Ports, func(p networkingv1.NetworkPolicyPort) bool {
					return p.Port != nil && p.Port.IntVal == int32(opts.Cluster.Port)
				}) {
				routesAdmitted = true
			}
		}
	}
	if !routesAdmitted {
		t.Errorf("the NATS NetworkPolicy does not let the servers reach each other on %d", opts.Cluster.Port)
	}
	for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || containerPort(c, p.HTTPGet.Port) != int32(opts.HTTPPort) || !strings.HasPrefix(p.HTTPGet.Path, "/healthz") {
			t.Errorf("probe %+v must GET /healthz on the monitoring port", p)
		}
	}
	checkServices(t, r)
	checkPDB(t, r, sts.Spec.Template.Labels)
}

// TestCardwireFindsNATS: the NATS_URL the overlays give the binaries is a
// Service that deploy/k8s/nats (production) or the dev overlay provides, on
// its client port, and NATS admits cardwire's pods.
func TestCardwireFindsNATS(t *testing.T) {
	natsBuild := render(t, "nats")
	for _, tc := range []struct{ Overlay, NATS string }{
		{"overlays/production", "nats"},
		{"overlays/dev", "overlays/dev"},
	} {
		t.Run(tc.Overlay, func(t *testing.T) {
			r := render(t, tc.Overlay)
			provider := r
			if tc.NATS == "nats" {
				provider = natsBuild
			}
			for _, b := range binaries {
				d := r.Deployments[b.Deployment]
				env := containerEnv(t, r, d.Spec.Template.Spec.Containers[0])
				u, err := url.Parse(env["NATS_URL"])
				if err != nil || u.Scheme != "nats" {
					t.Fatalf("%s: NATS_URL %q: %v", b.Deployment, env["NATS_URL"], err)
				}
				port, _ := strconv.Atoi(u.Port())
				if got := servicePort(t, provider, u.Hostname(), intstr.FromInt32(int32(port))); got == 0 {
					t.Errorf("%s: NATS_URL %s reaches no NATS container port", b.Deployment, u)
				}
				if tc.NATS == "nats" {
					pol := natsBuild.NetworkPolicies["nats"]
					if pol == nil {
						t.Fatal("deploy/k8s/nats has no NetworkPolicy")
					}
					admitted := false
					for _, rule := range pol.Spec.Ingress {
						for _, peer := range rule.From {
							if peer.PodSelector != nil && peer.NamespaceSelector == nil && subset(peer.PodSelector.MatchLabels, d.Spec.Template.Labels) &&
								slices.ContainsFunc(rule.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.IntVal == int32(port) }) {
								admitted = true
							}
						}
					}
					if !admitted || d.Namespace != natsBuild.StatefulSets["nats"].Namespace {
						t.Errorf("%s (namespace %s): the NATS NetworkPolicy does not admit it to port %d", b.Deployment, d.Namespace, port)
					}
				}
			}
		})
	}
}

func subset(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return len(want) > 0
}

func mountPathOf(t *testing.T, c corev1.Container, volume string) string {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m.MountPath
		}
	}
	t.Fatalf("container %s mounts no volume %s", c.Name, volume)
	return ""
}

// natsConfig loads the configuration that pod podName of the StatefulSet
// nats starts with, as nats-server does: the file its command names, from
// the ConfigMap mounted there with every key of it beside (so that an
// include finds its file), POD_NAME set, and each variable from a Secret
// set to secretValue of its key.
func natsConfig(t *testing.T, r *rendered, podName string) *server.Options {
	t.Helper()
	spec := r.StatefulSets["nats"].Spec.Template.Spec
	c := spec.Containers[0]
	if len(c.Command) < 3 || c.Command[1] != "--config" {
		t.Fatalf("command %q does not name a config file", c.Command)
	}
	confPath := c.Command[2]
	_, v, rel, ok := volumeAt(spec, c, confPath)
	if !ok || v.ConfigMap == nil {
		t.Fatalf("%s is not in a mounted ConfigMap", confPath)
	}
	cm, ok := r.ConfigMaps[v.ConfigMap.Name]
	if !ok {
		t.Fatalf("ConfigMap %s is not in the build", v.ConfigMap.Name)
	}
	if _, ok := cm.Data[rel]; !ok {
		t.Fatalf("ConfigMap %s has no %s", cm.Name, rel)
	}
	dir := t.TempDir()
	for key, data := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, key), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("POD_NAME", podName)
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Setenv(e.Name, secretValue(e.ValueFrom.SecretKeyRef))
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, rel))
	if err != nil {
		t.Fatalf("nats-server rejects %s: %v", confPath, err)
	}
	return opts
}

// secretValue stands in for the value of a Secret's key (a password, as
// the README has one made: letters and digits).
func secretValue(ref *corev1.SecretKeySelector) string {
	return "t3st" + strings.ReplaceAll(ref.Name+ref.Key, "-", "")
}

// TestHelmValues checks deploy/k8s/nats/values.yaml, the official chart's
// values: a 3-node JetStream cluster on volumes, and every container the
// chart makes hardened, since the chart sets no securityContext and the
// namespace enforces the restricted Pod Security Standard.
func TestHelmValues(t *testing.T) {
	raw, err := os.ReadFile("nats/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.UnmarshalStrict(raw, &values); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	want := map[string]any{
		"config.cluster.enabled":                                      true,
		"config.cluster.replicas":                                     float64(3),
		"config.jetstream.enabled":                                    true,
		"config.jetstream.fileStore.enabled":                          true,
		"config.jetstream.fileStore.pvc.enabled":                      true,
		"podTemplate.merge.spec.securityContext.runAsNonRoot":         true,
		"podTemplate.merge.spec.securityContext.seccompProfile.type":  "RuntimeDefault",
		"natsBox.podTemplate.merge.spec.securityContext.runAsNonRoot": true,
	}
	for _, c := range []string{"container", "reloader", "promExporter", "natsBox.container"} {
		want[c+".merge.securityContext.allowPrivilegeEscalation"] = false
		want[c+".merge.securityContext.readOnlyRootFilesystem"] = true
		want[c+".merge.securityContext.capabilities.drop"] = []any{"ALL"}
	}
	for path, w := range want {
		var v any = values
		for key := range strings.SplitSeq(path, ".") {
			m, _ := v.(map[string]any)
			v = m[key]
		}
		if fmt.Sprint(v) != fmt.Sprint(w) {
			t.Errorf("%s = %v, want %v", path, v, w)
		}
	}
}
