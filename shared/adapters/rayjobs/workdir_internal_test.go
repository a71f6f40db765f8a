package rayjobs

// Unit tests of the working-dir packaging and its cache, against an httptest
// server playing Ray's package API so that uploads can be counted. Uploads to
// the real Ray head are covered by rayjobs_test.go (TestJobSeesEnvAndWorkingDir).

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakePackages plays Ray's package API: GET answers 404 until the
// package was PUT.
type fakePackages struct {
	mu   sync.Mutex
	have map[string]bool
	puts []string
}

func (f *fakePackages) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := strings.TrimPrefix(r.URL.Path, "/api/packages/gcs/")
	switch r.Method {
	case http.MethodGet:
		if !f.have[name] {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
	case http.MethodPut:
		f.have[name] = true
		f.puts = append(f.puts, name)
	}
	w.WriteHeader(http.StatusOK)
}

func TestWorkingDirIsUploadedOnceUntilItChanges(t *testing.T) {
	fake := &fakePackages{have: map[string]bool{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	agent := filepath.Join(dir, "council-agent")
	if err := os.WriteFile(agent, []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := c.workingDirURI(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.workingDirURI(ctx, dir)
	if err != nil || again != first || len(fake.puts) != 1 {
		t.Fatalf("second call: %s, %v with %d uploads; want %s and 1 upload", again, err, len(fake.puts), first)
	}

	// The cluster collected the package: it is uploaded again.
	fake.mu.Lock()
	fake.have = map[string]bool{}
	fake.mu.Unlock()
	if uri, err := c.workingDirURI(ctx, dir); err != nil || uri != first || len(fake.puts) != 2 {
		t.Fatalf("after collection: %s, %v with %d uploads; want %s and 2 uploads", uri, err, len(fake.puts), first)
	}

	// A changed file is a new package.
	if err := os.WriteFile(agent, []byte("v2, longer"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(agent, time.Now(), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	changed, err := c.workingDirURI(ctx, dir)
	if err != nil || changed == first || len(fake.puts) != 3 {
		t.Fatalf("after a change: %s, %v with %d uploads; want a new package", changed, err, len(fake.puts))
	}
}
