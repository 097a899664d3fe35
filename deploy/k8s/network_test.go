package k8s_test

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/cardwire/cardwire/internal/events"
)

// podTemplates are the workloads' pod templates by workload name.
func podTemplates(r *rendered) map[string]corev1.PodTemplateSpec {
	out := map[string]corev1.PodTemplateSpec{}
	for n, d := range r.Deployments {
		out[n] = d.Spec.Template
	}
	for n, s := range r.StatefulSets {
		out[n] = s.Spec.Template
	}
	return out
}

// selected returns the pod templates a selector matches.
func selected(r *rendered, sel map[string]string) []corev1.PodTemplateSpec {
	var out []corev1.PodTemplateSpec
	if len(sel) == 0 {
		return nil
	}
	for _, p := range podTemplates(r) {
		if labels.SelectorFromSet(sel).Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out
}

// checkServices: every Service selects pods, each port's target is a port
// those pods have, and none is exposed outside the cluster.
func checkServices(t *testing.T, r *rendered) {
	t.Helper()
	for _, s := range r.Services {
		if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("Service %s is %s; only the Ingress is public", s.Name, s.Spec.Type)
		}
		pods := selected(r, s.Spec.Selector)
		if len(pods) == 0 {
			t.Errorf("Service %s selects no pods", s.Name)
			continue
		}
		for _, sp := range s.Spec.Ports {
			target := sp.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(sp.Port)
			}
			for _, p := range pods {
				if targetPort(p, target) == 0 {
					t.Errorf("Service %s port %s: target %s is not a container port of its pods", s.Name, sp.Name, target.String())
				}
			}
		}
	}
}

func targetPort(p corev1.PodTemplateSpec, port intstr.IntOrString) int32 {
	for _, c := range p.Spec.Containers {
		if n := containerPort(c, port); n != 0 {
			return n
		}
	}
	return 0
}

// servicePort follows a Service port (by name or number) to the container
// port it reaches.
func servicePort(t *testing.T, r *rendered, service string, port intstr.IntOrString) int32 {
	t.Helper()
	s, ok := r.Services[service]
	if !ok {
		t.Fatalf("no Service %s", service)
	}
	for _, sp := range s.Spec.Ports {
		if (port.Type == intstr.String && sp.Name == port.StrVal) || (port.Type == intstr.Int && sp.Port == port.IntVal) {
			for _, p := range selected(r, s.Spec.Selector) {
				if n := targetPort(p, sp.TargetPort); n != 0 {
					return n
				}
			}
		}
	}
	return 0
}

// checkIngress: the only public route is POST /webhooks/seam on the
// receiver's webhook port; production terminates TLS with cert-manager.
func checkIngress(t *testing.T, r *rendered, dev bool) {
	t.Helper()
	if len(r.Ingresses) != 1 {
		t.Fatalf("want exactly one Ingress, got %d", len(r.Ingresses))
	}
	recv := r.Deployments["webhook-receiver"].Spec.Template.Spec.Containers[0]
	webhookPort := containerPort(recv, intstr.FromString("http"))
	for _, ing := range r.Ingresses {
		if ing.Spec.DefaultBackend != nil {
			t.Errorf("Ingress %s has a default backend: everything would be public", ing.Name)
		}
		paths := 0
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				paths++
				if p.Path != events.Path || p.PathType == nil || *p.PathType != networkingv1.PathTypeExact {
					t.Errorf("Ingress %s routes %v %q; only Exact %q may be public", ing.Name, p.PathType, p.Path, events.Path)
				}
				if p.Backend.Service == nil || p.Backend.Service.Name != "webhook-receiver" {
					t.Errorf("Ingress %s path %s goes to %+v, not the receiver", ing.Name, p.Path, p.Backend)
					continue
				}
				port := intstr.FromString(p.Backend.Service.Port.Name)
				if port.StrVal == "" {
					port = intstr.FromInt32(p.Backend.Service.Port.Number)
				}
				if got := servicePort(t, r, "webhook-receiver", port); got != webhookPort {
					t.Errorf("Ingress %s reaches container port %d, not the webhook port %d (the admin port must never be public)", ing.Name, got, webhookPort)
				}
			}
		}
		if paths != 1 {
			t.Errorf("Ingress %s has %d paths, want 1", ing.Name, paths)
		}
		if dev {
			continue
		}
		if ing.Annotations["cert-manager.io/cluster-issuer"] == "" && ing.Annotations["cert-manager.io/issuer"] == "" {
			t.Errorf("Ingress %s has no cert-manager issuer annotation", ing.Name)
		}
		for _, rule := range ing.Spec.Rules {
			covered := false
			for _, tls := range ing.Spec.TLS {
				covered = covered || (slices.Contains(tls.Hosts, rule.Host) && tls.SecretName != "")
			}
			if !covered {
				t.Errorf("Ingress %s host %q is not covered by a TLS entry with a secretName", ing.Name, rule.Host)
			}
		}
	}
}

// policyPeer is what a NetworkPolicy rule must allow, by port.
type policyPeer struct {
	Namespace string            // kubernetes.io/metadata.name the peer namespace selector requires; "*" any
	Pods      map[string]string // pod labels the peer must select; nil for any pod
}

// checkNetworkPolicies: each cardwire pod is selected by a policy that
// limits both directions; the receiver takes traffic only from the ingress
// controller (webhooks) and monitoring (admin) and reaches only NATS and
// DNS; the worker's API is open to labelled clients and it reaches NATS, DNS
// and HTTPS (Seam).
func checkNetworkPolicies(t *testing.T, r *rendered) {
	t.Helper()
	nats := policyPeer{Namespace: "*", Pods: map[string]string{"app.kubernetes.io/name": "nats"}}
	dns := policyPeer{Namespace: "kube-system", Pods: map[string]string{"k8s-app": "kube-dns"}}
	monitoring := policyPeer{Namespace: "monitoring"}
	cases := []struct {
		Name    string
		Ingress map[string]policyPeer // container port name → the only peer allowed
		Egress  map[int32]bool        // ports that may be reached
		Need    []int32               // ports that must be reachable
	}{
		{
			Name: "webhook-receiver",
			Ingress: map[string]policyPeer{
				"http":  {Namespace: "ingress-nginx", Pods: map[string]string{"app.kubernetes.io/name": "ingress-nginx"}},
				"admin": monitoring,
			},
			Egress: map[int32]bool{4222: true, 53: true},
			Need:   []int32{4222, 53},
		},
		{
			Name: "worker",
			Ingress: map[string]policyPeer{
				"api":   {Namespace: "*", Pods: map[string]string{"cardwire.io/encodings-client": "true"}},
				"admin": monitoring,
			},
			Egress: map[int32]bool{4222: true, 53: true, 443: true},
			Need:   []int32{4222, 53, 443},
		},
	}
	for _, tc := range cases {
		d := r.Deployments[tc.Name]
		c := d.Spec.Template.Spec.Containers[0]
		var pols []*networkingv1.NetworkPolicy
		for _, p := range r.NetworkPolicies {
			sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
			if err != nil {
				t.Fatalf("NetworkPolicy %s: %v", p.Name, err)
			}
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				pols = append(pols, p)
			}
		}
		if len(pols) == 0 {
			t.Errorf("%s: no NetworkPolicy selects its pods", tc.Name)
			continue
		}
		types := map[networkingv1.PolicyType]bool{}
		reached := map[int32]bool{}
		for _, p := range pols {
			for _, pt := range p.Spec.PolicyTypes {
				types[pt] = true
			}
			for _, rule := range p.Spec.Ingress {
				if len(rule.From) == 0 || len(rule.Ports) == 0 {
					t.Errorf("%s: policy %s has an ingress rule open to every peer or port", tc.Name, p.Name)
					continue
				}
				for _, port := range rule.Ports {
					name := portName(c, port.Port)
					want, ok := tc.Ingress[name]
					if !ok {
						t.Errorf("%s: policy %s opens port %s, which should take no traffic", tc.Name, p.Name, port.Port.String())
						continue
					}
					for _, peer := range rule.From {
						if !peerWithin(peer, want) {
							t.Errorf("%s: policy %s lets %s reach port %s; only %+v may", tc.Name, p.Name, describePeer(peer), name, want)
						}
					}
				}
			}
			for _, rule := range p.Spec.Egress {
				if len(rule.Ports) == 0 {
					t.Errorf("%s: policy %s has an egress rule for every port", tc.Name, p.Name)
				}
				for _, port := range rule.Ports {
					if port.Port == nil || port.Port.Type != intstr.Int || !tc.Egress[port.Port.IntVal] {
						t.Errorf("%s: policy %s allows egress to port %v", tc.Name, p.Name, port.Port)
						continue
					}
					reached[port.Port.IntVal] = true
					if len(rule.To) == 0 {
						t.Errorf("%s: policy %s allows port %d to every destination", tc.Name, p.Name, port.Port.IntVal)
					}
					for _, peer := range rule.To {
						if !egressPeerOK(port.Port.IntVal, peer, nats, dns) {
							t.Errorf("%s: policy %s lets port %d reach %s", tc.Name, p.Name, port.Port.IntVal, describePeer(peer))
						}
					}
				}
			}
		}
		if !types[networkingv1.PolicyTypeIngress] || !types[networkingv1.PolicyTypeEgress] {
			t.Errorf("%s: policies limit %v; want both Ingress and Egress", tc.Name, types)
		}
		for _, port := range tc.Need {
			if !reached[port] {
				t.Errorf("%s: egress to port %d is not allowed", tc.Name, port)
			}
		}
	}
}

// egressPeerOK: NATS (4222) is the NATS pods or an outside address, DNS (53)
// is the cluster's DNS, HTTPS (443) is the internet without the private
// ranges and the cloud metadata address.
func egressPeerOK(port int32, peer networkingv1.NetworkPolicyPeer, nats, dns policyPeer) bool {
	switch port {
	case 4222:
		return peer.IPBlock != nil || peerWithin(peer, nats)
	case 53:
		return peerWithin(peer, dns)
	case 443:
		if peer.IPBlock == nil {
			return false
		}
		for _, private := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} {
			if !slices.Contains(peer.IPBlock.Except, private) {
				return false
			}
		}
		return true
	}
	return false
}

func portName(c corev1.Container, p *intstr.IntOrString) string {
	if p == nil {
		return "<every port>"
	}
	if p.Type == intstr.String {
		return p.StrVal
	}
	for _, cp := range c.Ports {
		if cp.ContainerPort == p.IntVal {
			return cp.Name
		}
	}
	return p.String()
}

// peerWithin reports whether peer allows no more than want.
func peerWithin(peer networkingv1.NetworkPolicyPeer, want policyPeer) bool {
	if peer.IPBlock != nil {
		return false
	}
	switch {
	case want.Namespace == "*":
		// any namespace is fine, but then the pods must be pinned below
	case peer.NamespaceSelector == nil:
		return false // the policy's own namespace: not where the peer runs
	default:
		if peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != want.Namespace {
			return false
		}
	}
	if want.Pods == nil {
		return true
	}
	if peer.PodSelector == nil {
		return false
	}
	for k, v := range want.Pods {
		if peer.PodSelector.MatchLabels[k] != v {
			return false
		}
	}
	return true
}

func describePeer(p networkingv1.NetworkPolicyPeer) string {
	var parts []string
	if p.NamespaceSelector != nil {
		parts = append(parts, "namespaces "+metav1.FormatLabelSelector(p.NamespaceSelector))
	}
	if p.PodSelector != nil {
		parts = append(parts, "pods "+metav1.FormatLabelSelector(p.PodSelector))
	}
	if p.IPBlock != nil {
		parts = append(parts, "ipBlock "+p.IPBlock.CIDR)
	}
	return strings.Join(parts, " ")
}

// checkServiceMonitors: one per binary, scraping /metrics on the admin port.
func checkServiceMonitors(t *testing.T, r *rendered) {
	t.Helper()
	for _, b := range binaries {
		d := r.Deployments[b.Deployment]
		adminPort := containerPort(d.Spec.Template.Spec.Containers[0], intstr.FromString("admin"))
		found := false
		for _, sm := range r.ServiceMonitors {
			for _, s := range r.Services {
				sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
				if err != nil {
					t.Fatalf("ServiceMonitor %s: %v", sm.Name, err)
				}
				if !sel.Matches(labels.Set(s.Labels)) || len(selected(r, s.Spec.Selector)) == 0 ||
					!labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
					continue
				}
				for _, ep := range sm.Spec.Endpoints {
					if ep.Port == "" {
						continue
					}
					if servicePort(t, r, s.Name, intstr.FromString(ep.Port)) == adminPort && ep.Path == "/metrics" {
						found = true
					}
				}
			}
		}
		if !found {
			t.Errorf("%s: no ServiceMonitor scrapes /metrics on its admin port %d", b.Deployment, adminPort)
		}
	}
}
