// Package image builds small container images from files on disk, without a
// container engine or a registry, and writes them as docker-save tarballs that
// `docker load`, `ctr images import` and `kind load image-archive` accept.
//
// An image is one layer: the files of a Spec, a /tmp with the sticky bit, and,
// when the Spec asks for it, /etc/passwd and /etc/group naming its user and the
// build machine's CA bundle. Every entry is stamped with the Unix epoch, so
// the same inputs give the same digest.
package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// CABundle is where Debian's ca-certificates package keeps the bundle that
// Spec.CACerts copies into the image, at the same path.
const CABundle = "/etc/ssl/certs/ca-certificates.crt"

// File is one regular file of an image.
type File struct {
	// Path inside the image, absolute ("/usr/local/bin/leasehold").
	Path string
	// Src is the file on disk to copy; Data is used when Src is empty.
	Src  string
	Data []byte
	// Mode is the permission bits; default 0o755 for Src, 0o644 for Data.
	Mode int64
}

// Spec describes an image.
type Spec struct {
	// Files to add; their parent folders are created (0755, root).
	Files []File
	// User is "uid:gid" the entrypoint runs as ("" = root). A numeric
	// non-root user also gets /etc/passwd and /etc/group entries named
	// UserName and a home folder /home/<UserName> it owns.
	User     string
	UserName string
	// CACerts copies CABundle from this machine into the image.
	CACerts bool
	// Entrypoint, Cmd, Env and WorkingDir go into the image config.
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	// Labels go into the image config.
	Labels map[string]string
}

// Build returns the image described by spec, for linux and this machine's
// architecture.
func Build(spec Spec) (v1.Image, error) {
	layer, err := buildLayer(spec)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	env := spec.Env
	if len(env) == 0 {
		env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	}
	cf.Config = v1.Config{
		User:       spec.User,
		Entrypoint: spec.Entrypoint,
		Cmd:        spec.Cmd,
		Env:        env,
		WorkingDir: spec.WorkingDir,
		Labels:     spec.Labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return img, nil
}

// WriteTarball writes img as a docker-save tarball tagged ref.
func WriteTarball(file, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image: reference %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("image: write %s: %w", file, err)
	}
	return nil
}

// entry is one tar entry before it is written.
type entry struct {
	hdr  tar.Header
	data []byte
}

func buildLayer(spec Spec) (v1.Layer, error) {
	entries := map[string]entry{}
	dir := func(p string, mode int64, uid, gid int) {
		entries[p+"/"] = entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode, Uid: uid, Gid: gid}}
	}
	var addParents func(p string)
	addParents = func(p string) {
		parent := path.Dir(p)
		if parent == "/" || parent == "." {
			return
		}
		rel := strings.TrimPrefix(parent, "/")
		if _, ok := entries[rel+"/"]; !ok {
			addParents(parent)
			dir(rel, 0o755, 0, 0)
		}
	}
	file := func(p string, data []byte, mode int64) {
		addParents(p)
		rel := strings.TrimPrefix(p, "/")
		entries[rel] = entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: mode, Size: int64(len(data))}, data: data}
	}
	dir("tmp", 0o1777, 0, 0)
	var errs []error
	for _, f := range spec.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
			errs = append(errs, fmt.Errorf("image: file path %q must be absolute and clean", f.Path))
			continue
		}
		data, mode := f.Data, f.Mode
		if f.Src != "" {
			b, err := os.ReadFile(f.Src)
			if err != nil {
				errs = append(errs, fmt.Errorf("image: %s: %w", f.Path, err))
				continue
			}
			data = b
			if mode == 0 {
				mode = 0o755
			}
		}
		if mode == 0 {
			mode = 0o644
		}
		file(f.Path, data, mode)
	}
	if spec.CACerts {
		b, err := os.ReadFile(CABundle)
		if err != nil {
			errs = append(errs, fmt.Errorf("image: CA certificates: %w (install Debian's ca-certificates package)", err))
		} else {
			file(CABundle, b, 0o644)
		}
	}
	if err := addUser(spec, file, dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	b, err := writeTar(entries)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return layer, nil
}

// addUser writes /etc/passwd, /etc/group and the home folder for a numeric
// non-root spec.User.
func addUser(spec Spec, file func(string, []byte, int64), dir func(string, int64, int, int)) error {
	if spec.User == "" {
		return nil
	}
	var uid, gid int
	if _, err := fmt.Sscanf(spec.User, "%d:%d", &uid, &gid); err != nil {
		return fmt.Errorf("image: User %q must be numeric uid:gid", spec.User)
	}
	if uid == 0 {
		return nil
	}
	n := spec.UserName
	if n == "" {
		n = "nonroot"
	}
	home := "/home/" + n
	file("/etc/passwd", fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:%s:/sbin/nologin\n", n, uid, gid, n, home), 0o644)
	file("/etc/group", fmt.Appendf(nil, "root:x:0:\n%s:x:%d:\n", n, gid), 0o644)
	dir("home", 0o755, 0, 0)
	dir(strings.TrimPrefix(home, "/"), 0o700, uid, gid)
	return nil
}

// writeTar writes entries sorted by name (parents first), all stamped with
// the Unix epoch.
func writeTar(entries map[string]entry) ([]byte, error) {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		e.hdr.ModTime = time.Unix(0, 0)
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, fmt.Errorf("image: %s: %w", n, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("image: %s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return buf.Bytes(), nil
}
