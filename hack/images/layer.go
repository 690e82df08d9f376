package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// entry is one file, directory or symlink of a layer. Owner, mode and
// content are all a layer's digest depends on: mtimes are the image's
// creation time and the order is by path, so the same inputs give the same
// bytes wherever and whenever they are built.
type entry struct {
	path     string // without a leading slash
	mode     int64  // permission bits
	uid, gid int
	typ      byte // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	data     []byte
	link     string
}

// layerFiles collects the entries of one layer; a later entry for a path
// replaces an earlier one.
type layerFiles map[string]entry

func (l layerFiles) file(p string, mode int64, data []byte) {
	l.add(entry{path: p, mode: mode, typ: tar.TypeReg, data: data})
}

func (l layerFiles) dir(p string, mode int64, uid, gid int) {
	l.add(entry{path: p, mode: mode, typ: tar.TypeDir, uid: uid, gid: gid})
}

func (l layerFiles) add(e entry) {
	e.path = strings.Trim(path.Clean("/"+e.path), "/")
	if e.path == "" {
		return
	}
	l[e.path] = e
}

// build writes the layer as a tar with every parent directory present
// (root-owned, 0755, unless listed) and returns it as an OCI layer.
func (l layerFiles) build(created time.Time) (v1.Layer, error) {
	for p := range l {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := l[d]; !ok {
				l[d] = entry{path: d, mode: 0o755, typ: tar.TypeDir}
			}
		}
	}
	paths := make([]string, 0, len(l))
	for p := range l {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := l[p]
		h := &tar.Header{Name: p, Mode: e.mode, Uid: e.uid, Gid: e.gid, Typeflag: e.typ, ModTime: created, Format: tar.FormatPAX}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeSymlink:
			h.Linkname = e.link
		case tar.TypeReg:
			h.Size = int64(len(e.data))
		default:
			return nil, fmt.Errorf("%s: unsupported tar type %q", p, e.typ)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
