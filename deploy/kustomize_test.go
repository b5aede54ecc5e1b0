//go:build envtest

package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
