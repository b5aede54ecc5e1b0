//go:build envtest

package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// fragmentRules is exactly what --policy-selector needs (proven against a real
// kube-apiserver in internal/k8s).
var fragmentRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
}

func deploymentArgs(t *testing.T, objs map[string][]string) string {
	t.Helper()
	var dep appsv1.Deployment
	if err := yaml.Unmarshal([]byte(objs["Deployment"][0]), &dep); err != nil {
		t.Fatal(err)
	}
	return strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " ")
}

// TestHelmFragments: policy.fragments renders the selector flags and the RBAC
// they need (a ClusterRole for every namespace, a Role in each listed one), and
// nothing when off.
func TestHelmFragments(t *testing.T) {
	url := "--set=betterAuth.url=https://auth.example.com"
	off := objects(t, render(t, url))
	if strings.Contains(deploymentArgs(t, off), "--policy-selector") || len(off["ClusterRole"]) != 0 {
		t.Fatal("fragments are on by default")
	}

	out := render(t, url, "--set", "policy.fragments.enabled=true")
	all := objects(t, out)
	if args := deploymentArgs(t, all); !strings.Contains(args, "--policy-selector=extauthz.io/policy-fragment=true") || strings.Contains(args, "--policy-namespaces") {
		t.Errorf("args %s", args)
	}
	if len(all["ClusterRole"]) != 1 || len(all["ClusterRoleBinding"]) != 1 {
		t.Fatalf("%d ClusterRoles, %d bindings", len(all["ClusterRole"]), len(all["ClusterRoleBinding"]))
	}
	var cr rbacv1.ClusterRole
	var crb rbacv1.ClusterRoleBinding
	if err := yaml.UnmarshalStrict([]byte(all["ClusterRole"][0]), &cr); err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict([]byte(all["ClusterRoleBinding"][0]), &crb); err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(cr.Rules, fragmentRules, samePolicyRule) {
		t.Errorf("ClusterRole rules %+v", cr.Rules)
	}
	if crb.RoleRef.Name != cr.Name || crb.Subjects[0].Namespace != "extauthz" || crb.Subjects[0].Name != "extauthz" {
		t.Errorf("binding %+v", crb)
	}
	dryRun(t, out)

	out = render(t, url, "--set", "policy.fragments.enabled=true", "--set", "policy.fragments.namespaces={my-app}")
	listed := objects(t, out)
	if args := deploymentArgs(t, listed); !strings.Contains(args, "--policy-namespaces=my-app") {
		t.Errorf("args %s", args)
	}
	if len(listed["ClusterRole"]) != 0 {
		t.Error("a ClusterRole with namespaces listed")
	}
	var role rbacv1.Role
	for _, doc := range listed["Role"] {
		var r rbacv1.Role
		if err := yaml.UnmarshalStrict([]byte(doc), &r); err != nil {
			t.Fatal(err)
		}
		if r.Namespace == "my-app" {
			role = r
		}
	}
	if role.Namespace != "my-app" || !slices.EqualFunc(role.Rules, fragmentRules, samePolicyRule) {
		t.Errorf("Role in my-app: %+v", role)
	}
	dryRun(t, out)

	for _, bad := range [][]string{
		{"--set", "policy.fragments.selector="},
		{"--set", "policy.fragments.namespaces={Not_A_Namespace}"},
		{"--set", "policy.fragments.namespces={a}"},
	} {
		if _, err := tryTool(helm, append([]string{"template", "x", chart(), url}, bad...)...); err == nil {
			t.Errorf("helm accepted %v", bad)
		}
	}
}

func samePolicyRule(a, b rbacv1.PolicyRule) bool {
	return slices.Equal(a.APIGroups, b.APIGroups) && slices.Equal(a.Resources, b.Resources) && slices.Equal(a.Verbs, b.Verbs) && len(a.ResourceNames) == 0
}

// TestHelmTestRunsCases: helmTest.cases become a test-hook ConfigMap and a second
// container running policy test against the installed policy; the rendered files,
// run as the Job would run them, pass (and a wrong case fails).
func TestHelmTestRunsCases(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	const vals = `betterAuth: {url: https://auth.example.com}
helmTest:
  cases:
    tasks.test.yaml: |
      cases:
        - name: own tasks
          request: {path: /api/6639900d-cfe5-59ec-bd5c-e0e68598457e/tasks}
          token: {claims: {sub: a, uuid: 6639900d-cfe5-59ec-bd5c-e0e68598457e}}
          want: {decision: allow}
        - name: health needs a token too (the policy betterAuth.url stands for)
          request: {path: /healthz}
          want: {decision: WANT}
`
	if err := os.WriteFile(values, []byte(strings.Replace(vals, "WANT", "deny, reason: token_missing", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := render(t, "-f", values)
	objs := objects(t, out)
	var job batchv1.Job
	if err := yaml.UnmarshalStrict([]byte(objs["Job"][0]), &job); err != nil {
		t.Fatal(err)
	}
	cs := job.Spec.Template.Spec.Containers
	if len(cs) != 2 || strings.Join(cs[1].Args, " ") != "policy test --policy=/etc/extauthz/policy/policy.yaml /etc/extauthz/cases" {
		t.Fatalf("containers %+v", cs)
	}
	var cases, pol corev1.ConfigMap
	for _, doc := range objs["ConfigMap"] {
		var cm corev1.ConfigMap
		if err := yaml.UnmarshalStrict([]byte(doc), &cm); err != nil {
			t.Fatal(err)
		}
		switch cm.Name {
		case "extauthz-policy-cases":
			cases = cm
		case "extauthz-policy":
			pol = cm
		}
	}
	if cases.Annotations["helm.sh/hook"] != "test" || len(cases.Data) != 1 || pol.Data["policy.yaml"] == "" {
		t.Fatalf("cases %+v policy %+v", cases, pol)
	}
	dryRun(t, out)

	// Run the files as the Job does, from a folder laid out as a ConfigMap mount is.
	bin := filepath.Join(t.TempDir(), "extauthz")
	runTool(t, "go", "build", "-o", bin, filepath.Join(repo, "cmd", "extauthz"))
	dir := t.TempDir()
	mount := mountLikeKubelet(t, dir, cases.Data)
	polFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polFile, []byte(pol.Data["policy.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := tryTool(bin, "policy", "test", "--policy="+polFile, mount); err != nil || !strings.Contains(out, "2 passed, 0 failed") {
		t.Fatalf("policy test: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(mount, "..data", "tasks.test.yaml"), []byte(strings.SplitN(strings.Replace(vals, "WANT", "allow", 1), "tasks.test.yaml: |\n", 2)[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "policy", "test", "--policy="+polFile, mount)
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "1 passed, 1 failed") {
		t.Fatalf("a wrong case passed: %v\n%s", err, b)
	}

	if _, err := tryTool(helm, "template", "x", chart(), "--set", "betterAuth.url=https://a.example.com", "--set", "helmTest.cases.notes\\.yaml=x"); err == nil {
		t.Error("a case file not named *.test.yaml was accepted")
	}
}

// mountLikeKubelet lays files out as the kubelet mounts a ConfigMap: in a
// timestamped folder, linked through ..data, each name a link into it.
func mountLikeKubelet(t *testing.T, dir string, data map[string]string) string {
	t.Helper()
	mount := filepath.Join(dir, "cases")
	ts := filepath.Join(mount, "..2026_12_01_10_00_00.1")
	if err := os.MkdirAll(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	for name, body := range data {
		if err := os.WriteFile(filepath.Join(ts, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(mount, name)); err != nil {
			t.Fatal(err)
		}
	}
	return mount
}

// TestKustomizeFragmentsComponent: the component adds the selector flag and its
// ClusterRole, and passes the server-side dry run.
func TestKustomizeFragmentsComponent(t *testing.T) {
	root := copyTree(t)
	ov := filepath.Join(root, "fragments-overlay")
	if err := os.MkdirAll(ov, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ov, "kustomization.yaml"), []byte("resources: [../base]\ncomponents: [../components/fragments]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runTool(t, kustomize, "build", ov)
	objs := objects(t, out)
	if args := deploymentArgs(t, objs); !strings.Contains(args, "--policy-selector=extauthz.io/policy-fragment=true") {
		t.Errorf("args %s", args)
	}
	var crb rbacv1.ClusterRoleBinding
	if len(objs["ClusterRoleBinding"]) != 1 {
		t.Fatalf("%d ClusterRoleBindings", len(objs["ClusterRoleBinding"]))
	}
	if err := yaml.UnmarshalStrict([]byte(objs["ClusterRoleBinding"][0]), &crb); err != nil {
		t.Fatal(err)
	}
	if crb.Subjects[0].Namespace != "extauthz" {
		t.Errorf("binding subject %+v", crb.Subjects)
	}
	dryRun(t, out)
}

// TestGatewayAPIAndAmbientExamples: the Gateway API ExternalAuth HTTPRoute and
// the Istio ambient waypoint policy pass the server-side dry run against the
// published CRDs (Gateway API's experimental channel, Istio's).
func TestGatewayAPIAndAmbientExamples(t *testing.T) {
	for _, f := range []string{"gateway-api/httproute.yaml", "istio-ambient/authorizationpolicy.yaml"} {
		t.Run(f, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(repo, "examples", f))
			if err != nil {
				t.Fatal(err)
			}
			objs := objects(t, string(b))
			switch f {
			case "gateway-api/httproute.yaml":
				if len(objs["HTTPRoute"]) != 1 || !strings.Contains(objs["HTTPRoute"][0], "type: ExternalAuth") {
					t.Fatalf("HTTPRoute %v", objs["HTTPRoute"])
				}
			default:
				if len(objs["AuthorizationPolicy"]) != 1 || !strings.Contains(objs["AuthorizationPolicy"][0], "targetRefs:") || strings.Contains(objs["AuthorizationPolicy"][0], "selector:") {
					t.Fatalf("AuthorizationPolicy %v", objs["AuthorizationPolicy"])
				}
			}
			dryRun(t, string(b))
		})
	}
}
