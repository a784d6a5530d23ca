package image_test

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/leasehold/leasehold/internal/image"
)

// entries reads the single layer of the image in a tarball.
func entries(t *testing.T, file string) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	img, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs[h.Name] = h
		data[h.Name], _ = io.ReadAll(tr)
	}
	return hdrs, data
}

// TestLeaseholdImage: the image that `make image` builds is what
// deploy/Dockerfile describes: the binary as entrypoint at
// /usr/local/bin/leasehold, user 65532 (named nonroot, with a home), the CA
// bundle and a world-writable sticky /tmp; the tarball is docker-save
// format tagged with the reference, and the same inputs give the same digest.
func TestLeaseholdImage(t *testing.T) {
	if _, err := os.Stat(image.CABundle); err != nil {
		t.Skipf("no CA bundle on this machine (%v)", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "leasehold")
	if err := os.WriteFile(bin, []byte("#!binary"), 0o700); err != nil {
		t.Fatal(err)
	}
	const ref = "example.com/leasehold:test"
	file := filepath.Join(dir, "img.tar")
	img, err := image.Build(image.Leasehold(bin))
	if err != nil {
		t.Fatal(err)
	}
	if err := image.WriteTarball(file, ref, img); err != nil {
		t.Fatal(err)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil || len(m) != 1 || len(m[0].RepoTags) != 1 || m[0].RepoTags[0] != ref {
		t.Fatalf("manifest.json: %+v, %v; want one image tagged %s", m, err, ref)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/usr/local/bin/leasehold" || cf.OS != "linux" {
		t.Errorf("config: user %q, entrypoint %q, os %q", cf.Config.User, cf.Config.Entrypoint, cf.OS)
	}
	hdrs, data := entries(t, file)
	want := map[string]int64{
		"usr/local/bin/leasehold":           0o755,
		"etc/ssl/certs/ca-certificates.crt": 0o644,
		"etc/passwd":                        0o644,
		"etc/group":                         0o644,
		"tmp/":                              0o1777,
		"home/nonroot/":                     0o700,
	}
	for name, mode := range want {
		h, ok := hdrs[name]
		if !ok {
			t.Errorf("%s missing from the image", name)
			continue
		}
		if h.Mode != mode {
			t.Errorf("%s: mode %o, want %o", name, h.Mode, mode)
		}
	}
	if h := hdrs["home/nonroot/"]; h != nil && (h.Uid != 65532 || h.Gid != 65532) {
		t.Errorf("home/nonroot/ owned by %d:%d, want 65532:65532", h.Uid, h.Gid)
	}
	if string(data["usr/local/bin/leasehold"]) != "#!binary" {
		t.Errorf("the binary's content changed")
	}
	if p := string(data["etc/passwd"]); p != "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n" {
		t.Errorf("/etc/passwd:\n%s", p)
	}
	again, err := image.Build(image.Leasehold(bin))
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two builds of the same inputs: %s and %s", d1, d2)
	}
}

// TestSpecErrors: bad paths, a missing file and a non-numeric user are
// reported together, each naming what is wrong.
func TestSpecErrors(t *testing.T) {
	_, err := image.Build(image.Spec{
		Files: []image.File{{Path: "relative/x", Data: []byte("x")}, {Path: "/missing", Src: "/no/such/file"}},
		User:  "nobody",
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`"relative/x" must be absolute`, "/missing:", `User "nobody" must be numeric`} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
