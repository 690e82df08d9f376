package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// debFS returns the file tree of a Debian package, as `dpkg-deb
// --fsys-tarfile` gives it.
func debFS(debPath string) (io.ReadCloser, error) {
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", debPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", debPath, err, strings.TrimSpace(stderr.String()))
	}
	return io.NopCloser(bytes.NewReader(out)), nil
}

// findDeb finds the downloaded package file <dir>/<name>_*.deb.
func findDeb(dir, name string) (string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, name+"_*.deb"))
	if err != nil {
		return "", err
	}
	if len(matches) != 1 {
		return "", fmt.Errorf("want one %s_*.deb in %s (hack/images/debs.sh downloads them), found %d", name, dir, len(matches))
	}
	return matches[0], nil
}

// keepFromDeb says which of a package's files an image takes, the way
// distroless images do: the shared libraries and the loader, and the
// package's copyright file; not its documentation, locales, gconv modules
// or maintainer tooling.
func keepFromDeb(p string) bool {
	switch {
	case strings.HasPrefix(p, "usr/share/doc/"):
		return path.Base(p) == "copyright"
	case strings.Contains(p, "/gconv/"), strings.Contains(p, "/audit/"):
		return false
	case strings.HasPrefix(p, "lib/"), strings.HasPrefix(p, "lib64/"), strings.HasPrefix(p, "usr/lib/"):
		return strings.Contains(path.Base(p), ".so")
	}
	return false
}

// addDeb copies the kept files of a package's tree into l.
func addDeb(l layerFiles, fsys io.Reader, keep func(string) bool) error {
	tr := tar.NewReader(fsys)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if !keep(p) {
			continue
		}
		switch h.Typeflag {
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			l.add(entry{path: p, mode: int64(h.FileInfo().Mode().Perm() &^ 0o022), typ: tar.TypeReg, data: data})
		case tar.TypeSymlink:
			l.add(entry{path: p, mode: 0o777, typ: tar.TypeSymlink, link: h.Linkname})
		}
	}
}

// caBundle concatenates the certificates the ca-certificates package ships,
// in path order: what update-ca-certificates writes to
// /etc/ssl/certs/ca-certificates.crt with the package's default selection.
func caBundle(fsys io.Reader) ([]byte, error) {
	tr := tar.NewReader(fsys)
	certs := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg || !strings.HasPrefix(path.Clean("/"+h.Name), "/usr/share/ca-certificates/") || !strings.HasSuffix(h.Name, ".crt") {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		certs[h.Name] = data
	}
	names := make([]string, 0, len(certs))
	for n := range certs {
		names = append(names, n)
	}
	sort.Strings(names)
	var bundle bytes.Buffer
	for _, n := range names {
		bundle.Write(certs[n])
		if !bytes.HasSuffix(certs[n], []byte("\n")) {
			bundle.WriteByte('\n')
		}
	}
	if bundle.Len() == 0 {
		return nil, errors.New("the ca-certificates package holds no certificates under /usr/share/ca-certificates")
	}
	return bundle.Bytes(), nil
}
