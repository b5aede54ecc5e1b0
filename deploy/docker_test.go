//go:build envtest

package deploy_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfile proves what can be proved without a Docker engine: the Dockerfile's
// shape (multi-stage, digest-pinned bases, distroless nonroot, uid 65532, static
// build), and that its exact build flags give a static binary that runs with an
// empty environment, as in a distroless image.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	args := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^ARG (\w+)=(\S+)$`).FindAllStringSubmatch(df, -1) {
		args[m[1]] = m[2]
	}
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) != 2 {
		t.Fatalf("%d stages, want a build and a runtime stage", len(froms))
	}
	digest := regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	for _, f := range froms {
		img := f[1]
		if strings.HasPrefix(img, "${") {
			img = args[strings.Trim(img, "${}")]
		}
		if !digest.MatchString(img) {
			t.Errorf("base image %q is not pinned by digest", img)
		}
	}
	runtime := args["RUNTIME_IMAGE"]
	if !strings.HasPrefix(runtime, "gcr.io/distroless/static") || !strings.Contains(runtime, ":nonroot@") {
		t.Errorf("runtime image %q is not distroless/static nonroot", runtime)
	}
	last := df[strings.LastIndex(df, "\nFROM "):]
	if !regexp.MustCompile(`(?m)^USER 65532(:65532)?$`).MatchString(last) {
		t.Error("the runtime stage does not run as USER 65532")
	}
	if strings.Contains(last, "RUN ") {
		t.Error("the runtime stage runs commands (distroless has no shell)")
	}
	build := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 .*go build .*)$`).FindStringSubmatch(df)
	if build == nil {
		t.Fatal("no CGO_ENABLED=0 go build line")
	}

	// Build with the Dockerfile's own flags and environment.
	bin := filepath.Join(t.TempDir(), "extauthz")
	line := strings.ReplaceAll(build[1], "${VERSION}", "v9.9.9-test")
	line = strings.ReplaceAll(line, "/out/extauthz", bin)
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("binary is dynamically linked (has an ELF interpreter)")
		}
	}
	run := exec.Command(bin, "version")
	run.Env = []string{} // nothing, as in a distroless container
	out, err := run.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "extauthz v9.9.9-test") {
		t.Fatalf("version with an empty environment: %v %q", err, out)
	}
}
