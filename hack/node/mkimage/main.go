// Command mkimage writes a one-layer OCI image of a static binary (plus any files
// it needs, such as CA certificates) as a docker-format tarball, for
// `ctr images import`: images for the test node, built without a Docker daemon.
//
//	mkimage -bin bin/extauthz -name /extauthz -file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt \
//	  -user 65532:65532 -tag registry.local/extauthz/extauthz:test -o extauthz.tar
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	bin := flag.String("bin", "", "the static binary")
	inName := flag.String("name", "/app", "its path in the image (the entrypoint)")
	tag := flag.String("tag", "", "image reference")
	user := flag.String("user", "65532:65532", "the image's user")
	out := flag.String("o", "", "output tarball")
	var files, env []string
	flag.Func("file", "SRC:DST, a file to add (repeatable)", func(v string) error { files = append(files, v); return nil })
	flag.Func("env", "KEY=VALUE for the image config (repeatable)", func(v string) error { env = append(env, v); return nil })
	flag.Parse()
	if err := run(*bin, *inName, *tag, *user, *out, files, env); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(bin, inName, tag, user, out string, files, env []string) error {
	if bin == "" || tag == "" || out == "" || !strings.HasPrefix(inName, "/") {
		return errors.New("-bin, -tag, -o and an absolute -name are required")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	// /tmp for programs that need one; the chart mounts the root read-only anyway.
	if err := tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch}); err != nil {
		return err
	}
	add := func(src, dst string, mode int64) error {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		// Parent folders are implied: containerd's unpacker creates them.
		dst = strings.TrimPrefix(path.Clean(dst), "/")
		if err := tw.WriteHeader(&tar.Header{Name: dst, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	}
	if err := add(bin, inName, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		src, dst, ok := strings.Cut(f, ":")
		if !ok {
			return fmt.Errorf("-file %q: want SRC:DST", f)
		}
		if err := add(src, dst, 0o644); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	b := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Config = v1.Config{Entrypoint: []string{inName}, User: user, Env: append([]string{"PATH=/"}, env...)}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, ref, img)
}
