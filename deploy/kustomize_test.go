//go:build envtest

package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

func parseDuration(s string) (int64, error) {
	d, err := time.ParseDuration(s)
	return int64(d / time.Second), err
}

// TestDryRunCatchesMistakes proves the dry runs are strict: a typo in a core object
// and one in a CRD-defined object are both refused by the API server.
func TestDryRunCatchesMistakes(t *testing.T) {
	for name, doc := range map[string]string{
		"Deployment with a misspelt field":      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x, namespace: extauthz}\nspec:\n  replicas: 1\n  selectr: {}\n",
		"SecurityPolicy with a misspelt field":  "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\nmetadata: {name: x, namespace: my-app}\nspec:\n  extAuth:\n    failOpn: false\n",
		"AuthorizationPolicy with a bad action": "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: my-app}\nspec:\n  action: MAYBE\n",
	} {
		f := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := tryTool(kubectl, "--kubeconfig", kubeconfig, "apply", "--dry-run=server", "--validate=strict", "-f", f); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestKustomizeRendersAndDryRuns(t *testing.T) {
	for _, dir := range []string{"base", "overlays/istio", "overlays/envoy-gateway"} {
		t.Run(dir, func(t *testing.T) {
			out := runTool(t, kustomize, "build", filepath.Join(repo, "deploy", "kustomize", dir))
			kinds := objects(t, out)
			for _, want := range []string{"Deployment", "Service", "ConfigMap", "Role", "RoleBinding", "ServiceAccount", "PodDisruptionBudget"} {
				if len(kinds[want]) == 0 {
					t.Errorf("no %s rendered", want)
				}
			}
			switch dir {
			case "overlays/istio":
				if len(kinds["AuthorizationPolicy"]) != 1 || !strings.Contains(kinds["AuthorizationPolicy"][0], "action: CUSTOM") {
					t.Errorf("AuthorizationPolicy: %v", kinds["AuthorizationPolicy"])
				}
			case "overlays/envoy-gateway":
				if len(kinds["SecurityPolicy"]) != 1 || !strings.Contains(kinds["SecurityPolicy"][0], "extAuth:") {
					t.Errorf("SecurityPolicy: %v", kinds["SecurityPolicy"])
				}
			}
			dryRun(t, out)
		})
	}
}

// copyTree copies the kustomize folder, so a test can write its own overlay beside it.
func copyTree(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "kustomize")
	src := filepath.Join(repo, "deploy", "kustomize")
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestKustomizeNamePrefix: an overlay's namePrefix renames the ConfigMap, the
// Role's resourceNames and the --policy-configmap argument together, or the
// watch would look for a ConfigMap that is not there (and RBAC would forbid it).
func TestKustomizeNamePrefix(t *testing.T) {
	root := copyTree(t)
	team := filepath.Join(root, "team-a")
	if err := os.MkdirAll(team, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(team, "kustomization.yaml"), []byte("namePrefix: team-a-\nnamespace: team-a\nresources: [../base]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	kinds := objects(t, runTool(t, kustomize, "build", team))
	var dep appsv1.Deployment
	if err := yaml.Unmarshal([]byte(kinds["Deployment"][0]), &dep); err != nil {
		t.Fatal(err)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	// The base's probes and memory limit are the chart's: readiness survives two
	// slow answers, GOMEMLIMIT leaves room under the limit.
	if r := c.ReadinessProbe; r == nil || r.FailureThreshold < 2 || r.TimeoutSeconds < 2 {
		t.Errorf("readiness probe %+v flaps", r)
	}
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" && e.Value != "224MiB" {
			t.Errorf("GOMEMLIMIT %+v, want the 256Mi limit less 32Mi", e)
		}
	}
	args := strings.Join(c.Args, " ")
	if !strings.Contains(args, "--policy-configmap team-a-extauthz-policy ") {
		t.Errorf("args %q do not name the prefixed ConfigMap", args)
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal([]byte(kinds["ConfigMap"][0]), &cm); err != nil {
		t.Fatal(err)
	}
	var role rbacv1.Role
	if err := yaml.Unmarshal([]byte(kinds["Role"][0]), &role); err != nil {
		t.Fatal(err)
	}
	if cm.Name != "team-a-extauthz-policy" || cm.Namespace != "team-a" || role.Rules[0].ResourceNames[0] != cm.Name {
		t.Errorf("ConfigMap %s/%s, Role resourceNames %v", cm.Namespace, cm.Name, role.Rules[0].ResourceNames)
	}
}

// TestKustomizeOverlayFollowsTheBaseNamespace: the Envoy Gateway overlay names the
// Service across namespaces; moving the base elsewhere must carry it along.
func TestKustomizeOverlayFollowsTheBaseNamespace(t *testing.T) {
	root := copyTree(t)
	base := filepath.Join(root, "base", "kustomization.yaml")
	b, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "namespace: extauthz\n", "namespace: auth\nnamePrefix: team-a-\n", 1))
	if err := os.WriteFile(base, b, 0o644); err != nil {
		t.Fatal(err)
	}
	kinds := objects(t, runTool(t, kustomize, "build", filepath.Join(root, "overlays", "envoy-gateway")))
	var sp struct {
		Spec struct {
			ExtAuth struct {
				GRPC struct {
					BackendRefs []struct{ Name, Namespace string } `json:"backendRefs"`
				} `json:"grpc"`
			} `json:"extAuth"`
		}
	}
	if err := yaml.Unmarshal([]byte(kinds["SecurityPolicy"][0]), &sp); err != nil {
		t.Fatal(err)
	}
	if ref := sp.Spec.ExtAuth.GRPC.BackendRefs[0]; ref.Name != "team-a-extauthz" || ref.Namespace != "auth" {
		t.Errorf("SecurityPolicy backendRef %+v, want team-a-extauthz in auth", ref)
	}
	var rg struct {
		Metadata struct{ Namespace string }
		Spec     struct{ To []struct{ Name string } }
	}
	if err := yaml.Unmarshal([]byte(kinds["ReferenceGrant"][0]), &rg); err != nil {
		t.Fatal(err)
	}
	if rg.Metadata.Namespace != "auth" || rg.Spec.To[0].Name != "team-a-extauthz" {
		t.Errorf("ReferenceGrant %+v", rg)
	}
}

// TestEnvoyGatewayTLSExample dry-runs the BackendTLSPolicy example against Gateway
// API's CRD.
func TestEnvoyGatewayTLSExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repo, "examples", "envoy-gateway", "backendtlspolicy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dryRun(t, string(b))
}

// TestKustomizeTLSComponent: the TLS component on the base renders, mounts the
// Secret whole and passes the server-side dry run.
func TestKustomizeTLSComponent(t *testing.T) {
	root := copyTree(t)
	ov := filepath.Join(root, "tls-overlay")
	if err := os.MkdirAll(ov, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ov, "kustomization.yaml"), []byte("resources: [../base]\ncomponents: [../components/tls]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runTool(t, kustomize, "build", ov)
	var dep appsv1.Deployment
	if err := yaml.Unmarshal([]byte(objects(t, out)["Deployment"][0]), &dep); err != nil {
		t.Fatal(err)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if args := strings.Join(c.Args, " "); !strings.Contains(args, "--tls-cert-file=/etc/extauthz/tls/tls.crt") || !strings.Contains(args, "--tls-client-ca-file=") {
		t.Errorf("args %s", args)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].SubPath != "" || dep.Spec.Template.Spec.Volumes[0].Secret.SecretName != "extauthz-tls" {
		t.Errorf("mounts %+v volumes %+v", c.VolumeMounts, dep.Spec.Template.Spec.Volumes)
	}
	dryRun(t, out)
}
