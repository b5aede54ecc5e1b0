//go:build envtest

package deploy_test

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/betterauth-extauthz/extauthz/internal/policy"
)

// valueSets: the chart's defaults with the one value a user must give, and every
// optional part switched on.
var valueSets = map[string][]string{
	"defaults":    {"--set", "betterAuth.url=https://auth.example.com"},
	"full-values": {"-f", "ci/full-values.yaml"},
}

func render(t *testing.T, args ...string) string {
	t.Helper()
	base := []string{"template", "extauthz", chart(), "--namespace", "extauthz"}
	return runTool(t, helm, append(base, args...)...)
}

func withChartDir(args []string) []string {
	out := slices.Clone(args)
	for i := range out {
		if strings.HasPrefix(out[i], "ci/") {
			out[i] = filepath.Join(chart(), out[i])
		}
	}
	return out
}

func TestHelmLintStrict(t *testing.T) {
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			runTool(t, helm, append([]string{"lint", "--strict", chart()}, withChartDir(args)...)...)
		})
	}
}

func TestHelmTemplateDryRun(t *testing.T) {
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			dryRun(t, render(t, withChartDir(args)...))
		})
	}
}

// TestPDBNeedsMoreThanOneReplica: with one replica a PDB only blocks drains.
func TestPDBNeedsMoreThanOneReplica(t *testing.T) {
	one := objects(t, render(t, "--set", "betterAuth.url=https://auth.example.com", "--set", "replicaCount=1"))
	if len(one["PodDisruptionBudget"]) != 0 {
		t.Error("a PDB with one replica")
	}
	two := objects(t, render(t, "--set", "betterAuth.url=https://auth.example.com"))
	if len(two["PodDisruptionBudget"]) != 1 || !strings.Contains(two["PodDisruptionBudget"][0], "unhealthyPodEvictionPolicy: AlwaysAllow") {
		t.Errorf("PDB %v", two["PodDisruptionBudget"])
	}
}

func TestHelmRejectsBadValues(t *testing.T) {
	cases := map[string][]string{
		"misspelt top-level key":  {"--set", "betterAuth.url=https://a.example.com", "--set", "replicaCont=3"},
		"misspelt nested key":     {"--set", "betterAuth.url=https://a.example.com", "--set", "prometheusRule.enabeld=true"},
		"misspelt betterAuth key": {"--set", "betterAuth.uri=https://a.example.com"},
		"bad log level":           {"--set", "betterAuth.url=https://a.example.com", "--set", "logLevel=verbose"},
		"bad duration":            {"--set", "betterAuth.url=https://a.example.com", "--set", "shutdown.delay=5"},
		"not a URL":               {"--set", "betterAuth.url=auth.example.com"},
		"no Better Auth at all":   {},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			base := []string{"template", "extauthz", chart()}
			if _, err := tryTool(helm, append(base, args...)...); err == nil {
				t.Fatal("helm accepted it")
			} else if name == "no Better Auth at all" && !strings.Contains(err.Error(), "set betterAuth.url") {
				t.Fatalf("unclear error: %v", err)
			}
		})
	}
}

// objects splits rendered manifests into kind -> list of YAML documents.
func objects(t *testing.T, manifests string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, doc := range strings.Split(manifests, "\n---") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Kind != "" {
			out[meta.Kind] = append(out[meta.Kind], doc)
		}
	}
	return out
}

// TestGOMEMLIMIT: the chart leaves the binary's mapped pages room under the memory
// limit, which charges them; 90% of a 100Mi limit left 10 MiB for 27, and the
// process thrashed on its own code.
func TestGOMEMLIMIT(t *testing.T) {
	for limit, want := range map[string]string{
		"40Mi": "20MiB", "64Mi": "32MiB", "100Mi": "68MiB", "128Mi": "96MiB", "256Mi": "224MiB",
		"1Gi": "921MiB", "2Gi": "1843MiB", "1.5Gi": "1382MiB", "0512Mi": "460MiB", "512M": "439MiB",
		"1G": "857MiB", "268435456": "224MiB", "262144Ki": "224MiB", "1Mi": "1MiB", "1e9": "",
	} {
		objs := objects(t, render(t, "--set", "betterAuth.url=https://auth.example.com", "--set-string", "resources.limits.memory="+limit))
		var d appsv1.Deployment
		if err := yaml.UnmarshalStrict([]byte(objs["Deployment"][0]), &d); err != nil {
			t.Fatal(err)
		}
		var got *corev1.EnvVar
		for i, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "GOMEMLIMIT" {
				got = &d.Spec.Template.Spec.Containers[0].Env[i]
			}
		}
		switch {
		case got == nil:
			t.Errorf("limit %s: no GOMEMLIMIT", limit)
		case want == "" && (got.ValueFrom == nil || got.ValueFrom.ResourceFieldRef == nil || got.ValueFrom.ResourceFieldRef.Resource != "limits.memory"):
			t.Errorf("limit %s: GOMEMLIMIT %+v, want the whole limit from the downward API", limit, got)
		case want != "" && got.Value != want:
			t.Errorf("limit %s: GOMEMLIMIT %q, want %q", limit, got.Value, want)
		}
	}
}

func TestRenderedDeploymentIsLockedDown(t *testing.T) {
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			objs := objects(t, render(t, withChartDir(args)...))
			var d appsv1.Deployment
			if err := yaml.UnmarshalStrict([]byte(objs["Deployment"][0]), &d); err != nil {
				t.Fatal(err)
			}
			pod := d.Spec.Template.Spec
			psc := pod.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod security context %+v", psc)
			}
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers", len(pod.Containers))
			}
			c := pod.Containers[0]
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
				t.Errorf("container security context %+v", sc)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("resources %+v", c.Resources)
			}
			admin := -1
			for _, p := range c.Ports {
				if p.Name == "admin" {
					admin = int(p.ContainerPort)
				}
			}
			for probe, want := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
				if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "admin" || admin < 0 {
					t.Errorf("probe for %s: %+v (admin port %d)", want, probe, admin)
				}
			}
			if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--policy-configmap=$(POD_NAMESPACE)/") }) {
				t.Errorf("args %v do not watch the policy ConfigMap", c.Args)
			}
			// Graceful termination must outlast readiness-off delay plus drain timeout.
			if grace := pod.TerminationGracePeriodSeconds; grace == nil || *grace <= drainSeconds(t, c.Args) {
				t.Errorf("terminationGracePeriodSeconds %v <= drain %d", grace, drainSeconds(t, c.Args))
			}
			if len(pod.TopologySpreadConstraints) == 0 {
				t.Error("no topology spread")
			}
			if name == "defaults" && (d.Spec.Replicas == nil || *d.Spec.Replicas != 2) {
				t.Errorf("replicas %v, want 2", d.Spec.Replicas)
			}
			// Readiness survives a slow answer or two; no Service links; GOMEMLIMIT
			// leaves the runtime room below the limit.
			if r := c.ReadinessProbe; r == nil || r.FailureThreshold < 2 || r.TimeoutSeconds < 2 {
				t.Errorf("readiness probe %+v flaps", r)
			}
			if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
				t.Error("enableServiceLinks is not false")
			}
			for _, e := range c.Env {
				if e.Name == "GOMEMLIMIT" && name == "defaults" && e.Value != "224MiB" {
					t.Errorf("GOMEMLIMIT %+v, want the 256Mi limit less 32Mi", e)
				}
			}
			if d.Spec.Template.Labels["app.kubernetes.io/part-of"] == "" && d.Labels["app.kubernetes.io/part-of"] == "" {
				t.Error("no app.kubernetes.io/part-of label")
			}
			if _, ok := d.Spec.Template.Annotations["extauthz.io/policy-hash"]; ok {
				t.Error("a policy checksum would roll the pods on every policy edit")
			}
			// Secret files (the revocation feed's secret, the TLS pair) are mounted
			// read-only, owner-read only, whole (no subPath: kubelet's updates must reach them).
			if name == "full-values" {
				if len(pod.Volumes) != 3 {
					t.Errorf("volumes %+v", pod.Volumes)
				}
				for _, v := range pod.Volumes {
					if v.Secret == nil || v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400 {
						t.Errorf("volume %+v is not an owner-read Secret", v)
					}
				}
				for _, m := range c.VolumeMounts {
					if !m.ReadOnly || m.SubPath != "" {
						t.Errorf("volume mount %+v", m)
					}
				}
			} else if len(pod.Volumes) != 0 {
				t.Errorf("volumes %+v with the defaults", pod.Volumes)
			}

			// The Role reads exactly one ConfigMap, the one the Deployment watches.
			var role rbacv1.Role
			if err := yaml.UnmarshalStrict([]byte(objs["Role"][0]), &role); err != nil {
				t.Fatal(err)
			}
			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict([]byte(objs["ConfigMap"][0]), &cm); err != nil {
				t.Fatal(err)
			}
			for _, r := range role.Rules {
				switch {
				case slices.Equal(r.Resources, []string{"configmaps"}):
					if !slices.Equal(r.ResourceNames, []string{cm.Name}) || !slices.Equal(r.Verbs, []string{"get", "list", "watch"}) {
						t.Errorf("configmaps rule %+v, want get/list/watch on [%s] only", r, cm.Name)
					}
				case slices.Equal(r.Resources, []string{"events"}):
					if !slices.Equal(r.Verbs, []string{"create", "patch"}) {
						t.Errorf("events rule %+v", r)
					}
				default:
					t.Errorf("unexpected rule %+v", r)
				}
			}
			// And what it holds is a valid policy.
			if _, err := policy.Load([]byte(cm.Data["policy.yaml"])); err != nil {
				t.Errorf("rendered policy: %v\n%s", err, cm.Data["policy.yaml"])
			}
		})
	}
}

func drainSeconds(t *testing.T, args []string) int64 {
	t.Helper()
	var total int64
	for _, a := range args {
		for _, flag := range []string{"--shutdown-delay=", "--shutdown-timeout="} {
			if v, ok := strings.CutPrefix(a, flag); ok {
				d, err := parseDuration(v)
				if err != nil {
					t.Fatal(err)
				}
				total += d
			}
		}
	}
	return total
}

// TestHelmTestChecksThePolicy: `helm test` runs `extauthz policy check` on the
// installed ConfigMap, in a pod the Service never selects.
func TestHelmTestChecksThePolicy(t *testing.T) {
	objs := objects(t, render(t, "--set", "betterAuth.url=https://auth.example.com"))
	if len(objs["Job"]) != 1 {
		t.Fatalf("%d Jobs rendered", len(objs["Job"]))
	}
	var job batchv1.Job
	if err := yaml.UnmarshalStrict([]byte(objs["Job"][0]), &job); err != nil {
		t.Fatal(err)
	}
	if job.Annotations["helm.sh/hook"] != "test" {
		t.Errorf("hook %q", job.Annotations["helm.sh/hook"])
	}
	c := job.Spec.Template.Spec.Containers[0]
	if strings.Join(c.Args, " ") != "policy check /etc/extauthz/policy/policy.yaml" {
		t.Errorf("args %v", c.Args)
	}
	if v := job.Spec.Template.Spec.Volumes[0]; v.ConfigMap == nil || v.ConfigMap.Name != "extauthz-policy" {
		t.Errorf("policy volume %+v", v)
	}
	var svc corev1.Service
	if err := yaml.Unmarshal([]byte(objs["Service"][0]), &svc); err != nil {
		t.Fatal(err)
	}
	selected := true
	for k, v := range svc.Spec.Selector {
		selected = selected && job.Spec.Template.Labels[k] == v
	}
	if selected {
		t.Errorf("the Service selector %v selects the test pod %v", svc.Spec.Selector, job.Spec.Template.Labels)
	}
	if off := objects(t, render(t, "--set", "betterAuth.url=https://auth.example.com", "--set", "helmTest.enabled=false")); len(off["Job"]) != 0 {
		t.Error("helmTest.enabled=false still renders the Job")
	}
}

// TestPolicyTypoRefusedByHelm: the policy's schema is part of the values schema,
// so a misspelt key in policy.document never reaches a pod.
func TestPolicyTypoRefusedByHelm(t *testing.T) {
	for name, doc := range map[string]string{
		"isuers":            `{"isuers":[{"betterAuthURL":"https://a.example.com"}]}`,
		"rule key":          `{"issuers":[{"betterAuthURL":"https://a.example.com"}],"rules":[{"name":"r","path":["/a"]}]}`,
		"duration number":   `{"issuers":[{"betterAuthURL":"https://a.example.com","maxStale":3600}]}`,
		"no issuers at all": `{"rules":[]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tryTool(helm, "template", "extauthz", chart(), "--set-json", "policy.document="+doc); err == nil {
				t.Fatal("helm accepted it")
			}
		})
	}
}

// TestChartREADMEUpToDate: the chart's README is generated from values.yaml.
func TestChartREADMEUpToDate(t *testing.T) {
	cmd := exec.Command("go", "run", "./hack/chartdoc", "-check")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// TestChartMetadataAndExtras: labels on every pod, extraObjects, the Service's
// trafficDistribution, and a dashboard uid per release.
func TestChartMetadataAndExtras(t *testing.T) {
	args := []string{"--set", "betterAuth.url=https://auth.example.com", "--set", "commonLabels.team=auth", "--set", "grafanaDashboard.enabled=true",
		"--set-json", `extraObjects=[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"{{ .Release.Name }}-extra"},"stringData":{"a":"b"}}]`}
	objs := objects(t, render(t, args...))
	var dep appsv1.Deployment
	if err := yaml.Unmarshal([]byte(objs["Deployment"][0]), &dep); err != nil {
		t.Fatal(err)
	}
	// commonLabels never override the selector labels.
	sel := objects(t, render(t, "--set", "betterAuth.url=https://auth.example.com", "--set-string", `commonLabels.app\.kubernetes\.io/name=other`))
	if !strings.Contains(sel["Job"][0], "name: extauthz-policy-check") || strings.Contains(sel["Job"][0], "name: other") || strings.Contains(sel["Deployment"][0], "name: other") {
		t.Error("commonLabels overrode a selector label")
	}
	for _, k := range []string{"team", "app.kubernetes.io/part-of", "app.kubernetes.io/version", "helm.sh/chart"} {
		if dep.Spec.Template.Labels[k] == "" {
			t.Errorf("pod template lacks label %s: %v", k, dep.Spec.Template.Labels)
		}
	}
	if len(objs["Secret"]) != 1 || !strings.Contains(objs["Secret"][0], "extauthz-extra") {
		t.Errorf("extraObjects: %v", objs["Secret"])
	}
	if !strings.Contains(objs["Service"][0], "trafficDistribution: PreferClose") {
		t.Error("no trafficDistribution on the Service")
	}
	uid := regexp.MustCompile(`"uid": "(extauthz-[0-9a-f]+)"`)
	first := uid.FindStringSubmatch(objs["ConfigMap"][len(objs["ConfigMap"])-1])
	other := runTool(t, helm, append([]string{"template", "other", chart(), "--namespace", "extauthz"}, args...)...)
	second := uid.FindStringSubmatch(other)
	if first == nil || second == nil || first[1] == second[1] {
		t.Errorf("dashboard uids %v and %v: want one per release", first, second)
	}
	dryRun(t, render(t, args...))
}

// TestHelmTLS: TLS from a cert-manager Certificate (validated against cert-manager's
// CRD by the dry run), client certificates with a SAN allow-list, probes and the
// ServiceMonitor on HTTPS when the admin port speaks TLS.
func TestHelmTLS(t *testing.T) {
	args := []string{"--set", "betterAuth.url=https://auth.example.com", "--set", "tls.enabled=true",
		"--set", "tls.certManager.enabled=true", "--set", "tls.certManager.issuerRef.name=ca",
		"--set", "tls.clientAuth.enabled=true", "--set", "tls.clientAuth.allowedSANs={spiffe://cluster.local/ns/gw/sa/envoy}",
		"--set", "tls.admin=true", "--set", "serviceMonitor.enabled=true"}
	out := render(t, args...)
	objs := objects(t, out)
	if len(objs["Certificate"]) != 1 || !strings.Contains(objs["Certificate"][0], "extauthz.extauthz.svc.cluster.local") {
		t.Errorf("Certificate: %v", objs["Certificate"])
	}
	var dep appsv1.Deployment
	if err := yaml.Unmarshal([]byte(objs["Deployment"][0]), &dep); err != nil {
		t.Fatal(err)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	args2 := strings.Join(c.Args, " ")
	for _, want := range []string{"--tls-cert-file=/etc/extauthz/tls/tls.crt", "--tls-client-ca-file=/etc/extauthz/client-ca/ca.crt", "--tls-client-san=spiffe://cluster.local/ns/gw/sa/envoy", "--admin-tls"} {
		if !strings.Contains(args2, want) {
			t.Errorf("args lack %s: %s", want, args2)
		}
	}
	if c.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS || c.LivenessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS {
		t.Error("probes do not use HTTPS with tls.admin")
	}
	for _, v := range dep.Spec.Template.Spec.Volumes {
		if v.Name == "tls" && v.Secret.SecretName != "extauthz-tls" {
			t.Errorf("tls volume %+v", v)
		}
	}
	if !strings.Contains(objs["ServiceMonitor"][0], "scheme: https") {
		t.Error("the ServiceMonitor scrapes plain HTTP from a TLS admin port")
	}
	dryRun(t, out)

	// Every certificate of the CA, only when asked for in so many words.
	if _, err := tryTool(helm, "template", "extauthz", chart(), "--set", "betterAuth.url=https://a.example.com", "--set", "tls.enabled=true",
		"--set", "tls.secretName=s", "--set", "tls.clientAuth.enabled=true", "--set", "tls.clientAuth.anyClientOfCA=true"); err != nil {
		t.Errorf("anyClientOfCA: %v", err)
	}
	for name, bad := range map[string][]string{
		"no certificate source": {"--set", "betterAuth.url=https://a.example.com", "--set", "tls.enabled=true"},
		"no issuer":             {"--set", "betterAuth.url=https://a.example.com", "--set", "tls.enabled=true", "--set", "tls.certManager.enabled=true"},
		"a SAN without scheme":  {"--set", "betterAuth.url=https://a.example.com", "--set", "tls.enabled=true", "--set", "tls.secretName=s", "--set", "tls.clientAuth.allowedSANs={gateway}"},
		"client CA, no SANs":    {"--set", "betterAuth.url=https://a.example.com", "--set", "tls.enabled=true", "--set", "tls.secretName=s", "--set", "tls.clientAuth.enabled=true"},
	} {
		if _, err := tryTool(helm, append([]string{"template", "extauthz", chart()}, bad...)...); err == nil {
			t.Errorf("%s: helm accepted it", name)
		}
	}
}
