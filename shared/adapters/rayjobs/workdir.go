package rayjobs

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"council.dev/shared/council"
)

// MaxPackageSize caps a zipped local working directory. Ray keeps packages
// in its GCS, whose limit is the gRPC message size (512 MiB by default).
const MaxPackageSize = 100 << 20

// packageCache remembers the package of each local working directory, so
// that a directory whose files have not changed (same paths, sizes, modes
// and modification times) is not zipped again for every job.
type packageCache struct {
	mu   sync.Mutex
	pkgs map[string]cachedPackage
}

type cachedPackage struct{ stamp, name string }

func (pc *packageCache) get(dir, stamp string) (string, bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	p, ok := pc.pkgs[dir]
	return p.name, ok && p.stamp == stamp
}

func (pc *packageCache) put(dir, stamp, name string) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.pkgs == nil {
		pc.pkgs = map[string]cachedPackage{}
	}
	pc.pkgs[dir] = cachedPackage{stamp: stamp, name: name}
}

// workingDirURI returns dir when it is a URI, and otherwise uploads the local
// directory dir as a package (unless the cluster has it) and returns the
// package's gcs:// URI.
func (c *Client) workingDirURI(ctx context.Context, dir string) (string, error) {
	if strings.Contains(dir, "://") {
		return dir, nil
	}
	st, err := os.Stat(dir)
	if err != nil {
		return "", council.Invalidf("working dir: %v", err)
	}
	if !st.IsDir() {
		return "", council.Invalidf("working dir %s: not a directory", dir)
	}
	stamp, err := dirStamp(dir)
	if err != nil {
		return "", council.Invalidf("working dir %s: %v", dir, err)
	}
	var pkg []byte
	name, cached := c.packages.get(dir, stamp)
	if !cached {
		var sum string
		if pkg, sum, err = zipDir(dir); err != nil {
			return "", council.Invalidf("working dir %s: %v", dir, err)
		}
		name = "_ray_pkg_" + sum + ".zip"
	}
	path := "/api/packages/gcs/" + name
	// GET pins an existing package for a while, so that it is not collected
	// before the job that needs it starts.
	err = c.do(ctx, "GET", path, nil, nil)
	if errors.Is(err, council.ErrNotFound) {
		if pkg == nil { // cached, but collected by the cluster since
			var sum string
			if pkg, sum, err = zipDir(dir); err != nil {
				return "", council.Invalidf("working dir %s: %v", dir, err)
			}
			name = "_ray_pkg_" + sum + ".zip"
			path = "/api/packages/gcs/" + name
		}
		err = c.do(ctx, "PUT", path, pkg, nil)
	}
	if err != nil {
		return "", fmt.Errorf("upload working dir %s: %w", dir, err)
	}
	c.packages.put(dir, stamp, name)
	return "gcs://" + name, nil
}

// dirStamp digests the paths, sizes, modes and modification times of the
// files zipDir would pack: cheap to compute, and it changes when a file does.
func dirStamp(dir string) (string, error) {
	h := sha1.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00%o\x00%d\n", p, info.Size(), info.Mode(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// zipDir zips the regular files under dir, paths relative to dir, skipping
// .git directories, and returns the zip and a hex digest of the files' paths,
// modes and contents (not of the zip, whose bytes need not be stable).
func zipDir(dir string) ([]byte, string, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	// Fastest deflate: the package is uploaded once and unpacked once per
	// node; a binary entrypoint (council-agent) is megabytes to compress.
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(w, flate.BestSpeed)
	})
	h := sha1.New()
	epoch := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := zip.FileInfoHeader(info)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Method, hdr.Modified = rel, zip.Deflate, epoch
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }() // opened read-only: io.Copy reports any read error
		var meta [20]byte
		binary.BigEndian.PutUint32(meta[:4], uint32(info.Mode().Perm()))
		binary.BigEndian.PutUint64(meta[4:12], uint64(len(rel)))
		binary.BigEndian.PutUint64(meta[12:], uint64(info.Size()))
		h.Write(meta[:])
		h.Write([]byte(rel))
		if _, err := io.Copy(io.MultiWriter(w, h), f); err != nil {
			return err
		}
		if buf.Len() > MaxPackageSize {
			return fmt.Errorf("zipped size over %d MiB", MaxPackageSize>>20)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	if buf.Len() > MaxPackageSize {
		return nil, "", fmt.Errorf("zipped size over %d MiB", MaxPackageSize>>20)
	}
	return buf.Bytes(), hex.EncodeToString(h.Sum(nil)), nil
}
