//go:build envtest

// Package deploy_test checks what users install: the Helm chart, the kustomize base
// and overlays, the Dockerfile, the Grafana dashboard and the alert rules, against a
// real kube-apiserver (server-side dry runs) and a running extauthz. `make deploy-test`
// installs the tools and sets HELM, KUSTOMIZE, KUBEBUILDER_ASSETS and EXTAUTHZ_CRDS.
package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

var (
	helm, kustomize, kubectl string
	kubeconfig               string
	repo                     string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	helm, kustomize = os.Getenv("HELM"), os.Getenv("KUSTOMIZE")
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	crds := os.Getenv("EXTAUTHZ_CRDS")
	if helm == "" || kustomize == "" || assets == "" || crds == "" {
		fmt.Fprintln(os.Stderr, "deploy tests need HELM, KUSTOMIZE, KUBEBUILDER_ASSETS and EXTAUTHZ_CRDS: run `make deploy-test` (it installs them)")
		return 1
	}
	kubectl = filepath.Join(assets, "kubectl")
	wd, _ := os.Getwd()
	repo = filepath.Dir(wd)

	env := &envtest.Environment{
		CRDInstallOptions: envtest.CRDInstallOptions{Paths: filepath.SplitList(crds), ErrorIfPathMissing: true},
	}
	start := time.Now()
	if _, err := env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "envtest:", err)
		return 1
	}
	defer env.Stop()
	fmt.Fprintf(os.Stderr, "deploy: kube-apiserver with %d CRD files up in %s\n", len(filepath.SplitList(crds)), time.Since(start).Round(time.Millisecond))
	user, err := env.AddUser(envtest.User{Name: "deployer", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "envtest user:", err)
		return 1
	}
	kc, err := user.KubeConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeconfig:", err)
		return 1
	}
	dir, _ := os.MkdirTemp("", "extauthz-deploy-")
	defer os.RemoveAll(dir)
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, ns := range []string{"extauthz", "my-app"} {
		if out, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "create", "namespace", ns).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "create namespace %s: %v %s\n", ns, err, out)
			return 1
		}
	}
	return m.Run()
}

// runTool runs a command and returns stdout, failing the test with stderr on error.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := tryTool(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", filepath.Base(name), strings.Join(args, " "), err)
	}
	return out
}

func tryTool(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return stdout.String(), nil
}

// dryRun applies manifests with --dry-run=server: the real API server validates every
// object strictly (unknown fields, wrong types, CRD schemas) and persists nothing.
func dryRun(t *testing.T, manifests string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "manifests.yaml")
	if err := os.WriteFile(f, []byte(manifests), 0o600); err != nil {
		t.Fatal(err)
	}
	out := runTool(t, kubectl, "--kubeconfig", kubeconfig, "apply", "--dry-run=server", "--validate=strict", "-f", f)
	t.Logf("dry run:\n%s", out)
}

func chart() string { return filepath.Join(repo, "deploy", "helm", "extauthz") }
