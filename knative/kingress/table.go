package kingress

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"knative.dev/networking/pkg/apis/networking/v1alpha1"
)

// Errors Table.Match returns; test for them with errors.Is.
var (
	// ErrNoHost means no Ingress rule lists the request's host.
	ErrNoHost = errors.New("kingress: no ingress rule for host")
	// ErrNoPath means a rule lists the host but none of its paths matches
	// the request's path and headers.
	ErrNoPath = errors.New("kingress: no ingress path matches")
)

// Table is the routing table: the rules of every Ingress the Controller
// keeps, indexed by host. It is safe for concurrent use; Match takes no
// lock, Set and Delete rebuild the index and swap it in.
type Table struct {
	mu        sync.Mutex
	ingresses map[string][]v1alpha1.IngressRule // by "namespace/name"
	hosts     atomic.Pointer[map[string][]*v1alpha1.HTTPIngressPath]
}

// NewTable returns an empty Table.
func NewTable() *Table {
	t := &Table{ingresses: map[string][]v1alpha1.IngressRule{}}
	t.hosts.Store(&map[string][]*v1alpha1.HTTPIngressPath{})
	return t
}

// Set loads the rules of the Ingress named key ("namespace/name"),
// replacing what the key held before. The rules are copied.
func (t *Table) Set(key string, rules []v1alpha1.IngressRule) {
	cp := make([]v1alpha1.IngressRule, len(rules))
	for i := range rules {
		rules[i].DeepCopyInto(&cp[i])
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ingresses[key] = cp
	t.rebuild()
}

// Delete removes the rules of the Ingress named key; an unknown key is a
// no-op.
func (t *Table) Delete(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.ingresses[key]; !ok {
		return
	}
	delete(t.ingresses, key)
	t.rebuild()
}

// Has reports whether the table holds the Ingress named key.
func (t *Table) Has(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.ingresses[key]
	return ok
}

// rebuild indexes every rule's paths by host. Ingresses are taken in key
// order, so when two claim one host the paths of the first come first.
// The caller holds t.mu.
func (t *Table) rebuild() {
	keys := make([]string, 0, len(t.ingresses))
	for k := range t.ingresses {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	idx := map[string][]*v1alpha1.HTTPIngressPath{}
	for _, k := range keys {
		for i := range t.ingresses[k] {
			rule := &t.ingresses[k][i]
			var paths []*v1alpha1.HTTPIngressPath
			if rule.HTTP != nil {
				for j := range rule.HTTP.Paths {
					paths = append(paths, &rule.HTTP.Paths[j])
				}
			}
			for _, h := range rule.Hosts {
				h = strings.ToLower(h)
				idx[h] = append(idx[h], paths...)
			}
		}
	}
	t.hosts.Store(&idx)
}

// Match returns the path that serves a request: the first path, among the
// rules that list host (a port is ignored), whose Path is a prefix of path
// (an empty Path is "/") and whose Headers all equal the request's. The
// result is shared and must not be modified. It returns ErrNoHost when no
// rule lists the host and ErrNoPath when none of their paths matches.
func (t *Table) Match(host, path string, header http.Header) (*v1alpha1.HTTPIngressPath, error) {
	host = stripPort(host)
	paths, ok := (*t.hosts.Load())[host]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrNoHost, host)
	}
	if path == "" {
		path = "/"
	}
	for _, p := range paths {
		if matches(p, path, header) {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w %s%s", ErrNoPath, host, path)
}

func matches(p *v1alpha1.HTTPIngressPath, path string, header http.Header) bool {
	prefix := p.Path
	if prefix == "" {
		prefix = "/"
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	for name, m := range p.Headers {
		if header.Get(name) != m.Exact {
			return false
		}
	}
	return true
}

// stripPort returns host without its port, lower-cased.
func stripPort(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}
