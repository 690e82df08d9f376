package main

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	nonroot  = 65532
	certFile = "/etc/ssl/certs/ca-certificates.crt"
)

// baseFiles is what distroless's base-nonroot holds that a Go binary
// uses: users and groups with nonroot 65532, name-service order, the CA
// bundle, a writable /tmp and nonroot's home.
func baseFiles(caBundle []byte) layerFiles {
	l := layerFiles{}
	l.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
	l.file("etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"))
	l.file("etc/nsswitch.conf", 0o644, []byte("passwd: files\ngroup: files\nhosts: files dns\n"))
	l.file(certFile, 0o644, caBundle)
	l.dir("tmp", 0o1777, 0, 0)
	l.dir("root", 0o700, 0, 0)
	l.dir("home/nonroot", 0o700, nonroot, nonroot)
	return l
}

// namedLayer is a layer's files and what the image history says of it.
type namedLayer struct {
	files layerFiles
	what  string
}

// build assembles one image on the base with the CA bundle certs and
// writes it as an OCI archive at out, returning the manifest digest.
func build(o options, certs []byte, s spec, ref, out string) (string, error) {
	layers := []namedLayer{{baseFiles(certs), "base: passwd, group, nsswitch.conf, CA certificates, /tmp"}}
	if len(s.debs) > 0 {
		libs := layerFiles{}
		for _, d := range s.debs {
			if _, err := readDeb(o.debDir, d, func(r io.Reader) (struct{}, error) { return struct{}{}, addDeb(libs, r, keepFromDeb) }); err != nil {
				return "", err
			}
		}
		layers = append(layers, namedLayer{libs, "libraries from Debian packages " + strings.Join(s.debs, ", ")})
	}
	if s.extraDir != "" {
		extra := layerFiles{}
		if err := addDir(extra, s.extraDir, s.extraAt); err != nil {
			return "", err
		}
		layers = append(layers, namedLayer{extra, "/" + s.extraAt})
	}
	bin, err := os.ReadFile(s.binary)
	if err != nil {
		return "", fmt.Errorf("reading the binary (make images builds it): %w", err)
	}
	entry := "/" + filepath.Base(s.binary)
	app := layerFiles{}
	app.file(entry, 0o755, bin)
	layers = append(layers, namedLayer{app, entry})

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range layers {
		layer, err := l.files.build(o.created)
		if err != nil {
			return "", err
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
			Created: v1.Time{Time: o.created}, CreatedBy: "hack/images: " + l.what}})
		if err != nil {
			return "", err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = "amd64", "linux", v1.Time{Time: o.created}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", nonroot, nonroot),
		Entrypoint: []string{entry},
		Cmd:        s.cmd,
		WorkingDir: "/",
		Env:        append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=" + certFile}, s.env...),
		Labels: map[string]string{
			"org.opencontainers.image.title":       s.name,
			"org.opencontainers.image.description": s.description,
			"org.opencontainers.image.version":     o.version,
			"org.opencontainers.image.revision":    o.revision,
			"org.opencontainers.image.source":      o.source,
			"org.opencontainers.image.created":     o.created.Format(time.RFC3339),
		},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	return digest.String(), writeArchive(img, ref, out, o.created)
}

// readDeb opens <dir>/<name>_*.deb and hands its file tree to use.
func readDeb[T any](dir, name string, use func(io.Reader) (T, error)) (T, error) {
	var zero T
	p, err := findDeb(dir, name)
	if err != nil {
		return zero, err
	}
	r, err := debFS(p)
	if err != nil {
		return zero, err
	}
	defer func() { _ = r.Close() }()
	v, err := use(r)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", p, err)
	}
	return v, nil
}

// addDir copies a directory tree into l under at, readable by everyone.
func addDir(l layerFiles, dir, at string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		target := filepath.ToSlash(filepath.Join(at, rel))
		if d.IsDir() {
			l.dir(target, 0o755, 0, 0)
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: only regular files and directories are copied", p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		l.file(target, 0o644, data)
		return nil
	})
}

// writeArchive writes img as an OCI image layout (the format go-containerregistry
// writes, named for containerd and crane) and tars it with fixed times and
// owners, in path order.
func writeArchive(img v1.Image, ref, out string, created time.Time) error {
	dir, err := os.MkdirTemp(filepath.Dir(out), ".layout-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref, // crane, skopeo
		"io.containerd.image.name":          ref, // ctr images import
	})); err != nil {
		return err
	}
	var paths []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			paths = append(paths, p)
		}
		return err
	}); err != nil {
		return err
	}
	sort.Strings(paths)
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: created, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
