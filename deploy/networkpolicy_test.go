//go:build envtest

package deploy_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

func renderNetworkPolicy(t *testing.T, args ...string) networkingv1.NetworkPolicy {
	t.Helper()
	base := []string{"--set", "betterAuth.url=https://auth.example.com", "--set", "networkPolicy.enabled=true"}
	docs := objects(t, render(t, append(base, args...)...))["NetworkPolicy"]
	if len(docs) != 1 {
		t.Fatalf("%d NetworkPolicies rendered", len(docs))
	}
	var np networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &np); err != nil {
		t.Fatal(err)
	}
	return np
}

// admits tells whether a pod with podLabels in a namespace with nsLabels may reach
// port on the extauthz pods, by the NetworkPolicy's ingress rules.
func admits(t *testing.T, np networkingv1.NetworkPolicy, nsLabels, podLabels map[string]string, port int32) bool {
	t.Helper()
	matches := func(sel *metav1.LabelSelector, l map[string]string) bool {
		if sel == nil {
			return true
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			t.Fatal(err)
		}
		return s.Matches(labels.Set(l))
	}
	for _, rule := range np.Spec.Ingress {
		if len(rule.From) == 0 || len(rule.Ports) == 0 {
			t.Fatalf("an ingress rule with no peers or no ports admits everyone: %+v", rule)
		}
		portOK := false
		for _, p := range rule.Ports {
			portOK = portOK || p.Port.IntVal == port
		}
		for _, peer := range rule.From {
			if peer.IPBlock != nil {
				continue
			}
			if portOK && peer.NamespaceSelector != nil && matches(peer.NamespaceSelector, nsLabels) && matches(peer.PodSelector, podLabels) {
				return true
			}
		}
	}
	return false
}

// TestNetworkPolicyAdmitsTheMesh: with `action: CUSTOM` the Check comes from the
// app's own sidecar or waypoint (app namespace) or Envoy Gateway's proxies; the
// defaults must admit those, and nobody else.
func TestNetworkPolicyAdmitsTheMesh(t *testing.T) {
	np := renderNetworkPolicy(t)
	ns := func(name string, l ...string) map[string]string {
		m := map[string]string{corev1.LabelMetadataName: name}
		for i := 0; i+1 < len(l); i += 2 {
			m[l[i]] = l[i+1]
		}
		return m
	}
	sidecar := map[string]string{"app": "shop"}
	for _, tc := range []struct {
		name  string
		ns    map[string]string
		port  int32
		admit bool
	}{
		{"sidecar-injected app namespace", ns("shop", "istio-injection", "enabled"), 9001, true},
		{"revision-labelled app namespace", ns("shop", "istio.io/rev", "1-28"), 9001, true},
		{"ambient namespace (waypoint)", ns("shop", "istio.io/dataplane-mode", "ambient"), 9001, true},
		{"istio ingress gateway", ns("istio-system"), 9001, true},
		{"Envoy Gateway proxies", ns("envoy-gateway-system"), 9002, true},
		{"Prometheus on the admin port", ns("monitoring"), 9003, true},
		{"an unlabelled namespace", ns("other"), 9001, false},
		{"injection disabled", ns("shop", "istio-injection", "disabled"), 9001, false},
		{"a mesh app on the admin port", ns("shop", "istio-injection", "enabled"), 9003, false},
	} {
		if got := admits(t, np, tc.ns, sidecar, tc.port); got != tc.admit {
			t.Errorf("%s on %d: admitted %v, want %v", tc.name, tc.port, got, tc.admit)
		}
	}

	// The API server: 443 (managed clusters) and 6443 (kubeadm, kind, k3s).
	ports := map[int32]bool{}
	for _, rule := range np.Spec.Egress {
		if len(rule.Ports) == 0 {
			t.Errorf("an egress rule with no ports allows every port: %+v", rule)
		}
		for _, p := range rule.Ports {
			ports[p.Port.IntVal] = true
		}
	}
	if !ports[443] || !ports[6443] {
		t.Errorf("egress ports %v, want 443 and 6443", ports)
	}
}

// TestNetworkPolicyRefusesEmptyLists: an empty peer or port list in a NetworkPolicy
// admits everyone, so the chart refuses it, with and without its schema.
func TestNetworkPolicyRefusesEmptyLists(t *testing.T) {
	for _, set := range []string{"networkPolicy.ingressFrom=[]", "networkPolicy.jwks.ports=[]", "networkPolicy.apiServer.ports=[]", `networkPolicy.ingressFrom=[{}]`,
		`networkPolicy.extraIngress=[{}]`, `networkPolicy.extraEgress=[{"ports":[{"port":1}]}]`} {
		for _, skip := range []bool{false, true} {
			args := []string{"template", "extauthz", chart(), "--set", "betterAuth.url=https://a.example.com", "--set", "networkPolicy.enabled=true", "--set-json", set}
			if skip {
				if strings.Contains(set, "{") {
					continue // only the schema can see inside a peer
				}
				args = append(args, "--skip-schema-validation")
			}
			if out, err := tryTool(helm, args...); err == nil {
				t.Errorf("%s (skip schema %v) accepted:\n%s", set, skip, out)
			}
		}
	}
}

// TestNetworkPolicyExtraRules: extraIngress and extraEgress are appended as written.
func TestNetworkPolicyExtraRules(t *testing.T) {
	np := renderNetworkPolicy(t,
		"--set-json", `networkPolicy.extraIngress=[{"from":[{"ipBlock":{"cidr":"10.10.0.0/16"}}],"ports":[{"port":9002}]}]`,
		"--set-json", `networkPolicy.extraEgress=[{"to":[{"ipBlock":{"cidr":"10.20.0.5/32"}}],"ports":[{"port":4317}]}]`,
		"--set-json", `networkPolicy.apiServer.cidrs=["172.18.0.2/32"]`)
	last := np.Spec.Ingress[len(np.Spec.Ingress)-1]
	if len(last.From) != 1 || last.From[0].IPBlock == nil || last.From[0].IPBlock.CIDR != "10.10.0.0/16" {
		t.Errorf("extraIngress not appended: %+v", np.Spec.Ingress)
	}
	lastE := np.Spec.Egress[len(np.Spec.Egress)-1]
	if len(lastE.To) != 1 || lastE.To[0].IPBlock.CIDR != "10.20.0.5/32" {
		t.Errorf("extraEgress not appended: %+v", np.Spec.Egress)
	}
	found := false
	for _, r := range np.Spec.Egress {
		for _, p := range r.To {
			found = found || p.IPBlock != nil && p.IPBlock.CIDR == "172.18.0.2/32"
		}
	}
	if !found {
		t.Error("apiServer.cidrs not rendered")
	}
}
