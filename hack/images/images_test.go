package main

import (
	"archive/tar"
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLayerDigestDependsOnlyOnContent: the same files added in another
// order, at another time of day, give the same layer; a changed byte or
// mode gives another.
func TestLayerDigestDependsOnlyOnContent(t *testing.T) {
	created := time.Unix(1_700_000_000, 0)
	digest := func(l layerFiles) string {
		t.Helper()
		layer, err := l.build(created)
		if err != nil {
			t.Fatal(err)
		}
		d, err := layer.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	a := layerFiles{}
	a.file("/usr/bin/tool", 0o755, []byte("binary"))
	a.file("etc/passwd", 0o644, []byte("root"))
	a.dir("home/nonroot", 0o700, nonroot, nonroot)
	b := layerFiles{}
	b.dir("home/nonroot/", 0o700, nonroot, nonroot)
	b.file("etc/passwd", 0o644, []byte("root"))
	b.file("usr/bin/tool", 0o755, []byte("binary"))
	if digest(a) != digest(b) {
		t.Fatal("the same files in another order gave another layer")
	}
	c := layerFiles{}
	for p, e := range b {
		c[p] = e
	}
	c.file("usr/bin/tool", 0o755, []byte("binarY"))
	if digest(c) == digest(b) {
		t.Fatal("a changed byte gave the same layer")
	}
	c.file("usr/bin/tool", 0o700, []byte("binary"))
	if digest(c) == digest(b) {
		t.Fatal("a changed mode gave the same layer")
	}
}

// TestLayerHasEveryParentDirectory: a runtime extracting the layer needs
// no directory it does not list, and nonroot's home keeps its owner.
func TestLayerHasEveryParentDirectory(t *testing.T) {
	l := layerFiles{}
	l.file("lib/x86_64-linux-gnu/libc.so.6", 0o644, []byte("elf"))
	l.dir("home/nonroot", 0o700, nonroot, nonroot)
	layer, err := l.build(time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layer.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	var names []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
		if h.Name == "home/nonroot/" && (h.Uid != nonroot || h.Mode != 0o700) {
			t.Fatalf("home/nonroot: uid %d mode %o", h.Uid, h.Mode)
		}
		if !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Fatalf("%s: mtime %v, want the image's creation time", h.Name, h.ModTime)
		}
	}
	want := []string{"home/", "home/nonroot/", "lib/", "lib/x86_64-linux-gnu/", "lib/x86_64-linux-gnu/libc.so.6"}
	if !slices.Equal(names, want) {
		t.Fatalf("entries %v, want %v", names, want)
	}
}

func TestKeepFromDeb(t *testing.T) {
	for p, keep := range map[string]bool{
		"lib/x86_64-linux-gnu/libc.so.6":               true,
		"lib64/ld-linux-x86-64.so.2":                   true,
		"usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30": true,
		"usr/share/doc/libc6/copyright":                true,
		"usr/share/doc/libc6/changelog.Debian.gz":      false,
		"usr/lib/x86_64-linux-gnu/gconv/UTF-16.so":     false,
		"usr/share/locale/de/LC_MESSAGES/libc.mo":      false,
		"usr/bin/ldd": false,
		"usr/share/gcc/python/libstdcxx/v6/printers.py":                         false,
		"usr/lib/x86_64-linux-gnu/audit/sotruss-lib.so":                         false,
		"etc/ld.so.conf.d/x86_64-linux-gnu.conf":                                false,
		"usr/share/lintian/overrides/libc6":                                     false,
		"lib/x86_64-linux-gnu/libpthread.so.0":                                  true,
		"usr/lib/x86_64-linux-gnu/libgcc_s.so.1":                                true,
		"usr/share/doc/ca-certificates/examples/ca-certificates-local/Makefile": false,
	} {
		if got := keepFromDeb(p); got != keep {
			t.Errorf("keepFromDeb(%q) = %v, want %v", p, got, keep)
		}
	}
}

// debTree writes a package file tree as dpkg-deb --fsys-tarfile gives it.
func debTree(t *testing.T, files map[string]string, links map[string]string) *bytes.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range slices.Backward(names) { // the package's order is not ours
		_ = tw.WriteHeader(&tar.Header{Name: "./" + n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg, ModTime: time.Now()})
		_, _ = tw.Write([]byte(files[n]))
	}
	for n, target := range links {
		_ = tw.WriteHeader(&tar.Header{Name: "./" + n, Linkname: target, Typeflag: tar.TypeSymlink})
	}
	_ = tw.Close()
	return bytes.NewReader(buf.Bytes())
}

func TestAddDebKeepsLibrariesAndLinks(t *testing.T) {
	l := layerFiles{}
	tree := debTree(t, map[string]string{"usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30": "elf", "usr/share/doc/libstdc++6/README": "doc"},
		map[string]string{"usr/lib/x86_64-linux-gnu/libstdc++.so.6": "libstdc++.so.6.0.30"})
	if err := addDeb(l, tree, keepFromDeb); err != nil {
		t.Fatal(err)
	}
	if len(l) != 2 || string(l["usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30"].data) != "elf" ||
		l["usr/lib/x86_64-linux-gnu/libstdc++.so.6"].link != "libstdc++.so.6.0.30" {
		t.Fatalf("kept %v", l)
	}
}

func TestCABundleIsInPathOrder(t *testing.T) {
	bundle, err := caBundle(debTree(t, map[string]string{
		"usr/share/ca-certificates/mozilla/B.crt": "B\n", "usr/share/ca-certificates/mozilla/A.crt": "A",
		"usr/share/doc/ca-certificates/README": "not a certificate"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if string(bundle) != "A\nB\n" {
		t.Fatalf("bundle %q, want the certificates in path order, each ending in a newline", bundle)
	}
	if _, err := caBundle(debTree(t, map[string]string{"usr/share/doc/x": "y"}, nil)); err == nil {
		t.Fatal("a package without certificates gave a bundle")
	}
}

// TestDockerfileDescribesTheSameImages: a user with a container engine gets
// an image per product, named and run as `make images` builds it, glibc-
// based exactly where the image carries libc6.
func TestDockerfileDescribesTheSameImages(t *testing.T) {
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages := regexp.MustCompile(`(?m)^FROM (\S+) AS (\S+)\n((?:[^F\n].*\n|\n)*)`).FindAllStringSubmatch(string(data), -1)
	byName := map[string][]string{}
	for _, s := range stages {
		byName[s[2]] = s
	}
	for _, p := range products {
		s, ok := byName[p.name]
		if !ok {
			t.Errorf("the Dockerfile has no %q target", p.name)
			continue
		}
		glibc := slices.Contains(p.debs, "libc6")
		if base := s[1]; strings.Contains(base, "distroless/base") != glibc || !strings.HasSuffix(base, ":nonroot") {
			t.Errorf("%s: base %s, but the image carries glibc: %v (and must be nonroot)", p.name, base, glibc)
		}
		body := s[3]
		for _, want := range []string{"USER 65532:65532", `ENTRYPOINT ["/` + p.name + `"]`, "/out/" + p.name + " /" + p.name} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: the Dockerfile stage lacks %q", p.name, want)
			}
		}
		cgo := "CGO_ENABLED=0"
		if glibc {
			cgo = "CGO_ENABLED=1"
		}
		if !regexp.MustCompile(cgo + ` go build [^\n]*-o /out/` + p.name + ` `).Match(data) {
			t.Errorf("%s: the Dockerfile does not build it with %s", p.name, cgo)
		}
	}
	if len(stages)-1 != len(products) { // and the build stage
		t.Errorf("the Dockerfile has %d image stages, the project %d images", len(stages)-1, len(products))
	}
}
