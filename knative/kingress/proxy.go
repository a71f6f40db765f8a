package kingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"

	"knative.dev/networking/pkg/apis/networking/v1alpha1"
)

// HealthPath answers readiness probes on the listener for requests whose
// host the Table does not route (a probe's host is the pod's address).
const HealthPath = "/healthz"

// Proxy is the reverse proxy: an http.Handler that forwards each request
// to the backend its Table picks.
type Proxy struct {
	table    *Table
	upstream func(v1alpha1.IngressBackend) string
	intn     func(n int) int
	ready    func() bool
	log      *slog.Logger
	rp       *httputil.ReverseProxy
}

// ProxyOption configures a Proxy.
type ProxyOption func(*Proxy) error

// WithUpstream sets the function that turns a backend into the "host:port"
// the request goes to; the default is ClusterAddress. Tests point it at
// their own servers.
func WithUpstream(f func(v1alpha1.IngressBackend) string) ProxyOption {
	return func(p *Proxy) error {
		if f == nil {
			return errors.New("kingress: WithUpstream: nil function")
		}
		p.upstream = f
		return nil
	}
}

// WithRand sets the random source that picks among a path's splits; the
// default is seeded randomly. The Proxy serialises its use.
func WithRand(r *rand.Rand) ProxyOption {
	return func(p *Proxy) error {
		if r == nil {
			return errors.New("kingress: WithRand: nil source")
		}
		var mu sync.Mutex
		p.intn = func(n int) int {
			mu.Lock()
			defer mu.Unlock()
			return r.IntN(n)
		}
		return nil
	}
}

// WithReady sets what HealthPath reports: 200 while ready returns true,
// 503 otherwise. The default is always ready; cmd/kingress reports ready
// once the Controller has loaded every Ingress.
func WithReady(ready func() bool) ProxyOption {
	return func(p *Proxy) error {
		if ready == nil {
			return errors.New("kingress: WithReady: nil function")
		}
		p.ready = ready
		return nil
	}
}

// WithProxyLogger sets the logger for proxy errors; the default discards.
func WithProxyLogger(l *slog.Logger) ProxyOption {
	return func(p *Proxy) error {
		if l == nil {
			return errors.New("kingress: WithProxyLogger: nil logger")
		}
		p.log = l
		return nil
	}
}

// ClusterAddress is the default upstream: the backend Service's
// cluster-local name and port, <name>.<namespace>.svc.cluster.local:<port>.
// A missing port is 80.
func ClusterAddress(b v1alpha1.IngressBackend) string {
	port := b.ServicePort.IntValue()
	if port == 0 {
		port = 80
	}
	return net.JoinHostPort(b.ServiceName+"."+b.ServiceNamespace+".svc.cluster.local", strconv.Itoa(port))
}

// NewProxy returns a Proxy that routes by table.
func NewProxy(table *Table, opts ...ProxyOption) (*Proxy, error) {
	if table == nil {
		return nil, errors.New("kingress: NewProxy: nil table")
	}
	p := &Proxy{
		table:    table,
		upstream: ClusterAddress,
		intn:     rand.IntN,
		ready:    func() bool { return true },
		log:      slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		if err := o(p); err != nil {
			return nil, err
		}
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:       p.rewrite,
		Transport:     newTransport(),
		FlushInterval: -1,
		ErrorHandler:  p.proxyError,
	}
	return p, nil
}

// target is what routing decided for one request; rewrite reads it from the
// request's context.
type target struct {
	addr  string
	host  string
	split *v1alpha1.IngressBackendSplit
	path  *v1alpha1.HTTPIngressPath
}

type targetKey struct{}

// ServeHTTP routes r by the Table and forwards it, or answers 404 when no
// rule matches, and answers HealthPath for hosts the Table does not route.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, err := p.table.Match(r.Host, r.URL.Path, r.Header)
	if errors.Is(err, ErrNoHost) && r.URL.Path == HealthPath {
		p.health(w)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	split := p.pick(path.Splits)
	if split == nil {
		http.Error(w, fmt.Sprintf("kingress: no split with a positive percent for %s%s", r.Host, r.URL.Path), http.StatusServiceUnavailable)
		return
	}
	t := &target{addr: p.upstream(split.IngressBackend), host: r.Host, split: split, path: path}
	if path.RewriteHost != "" {
		t.host = path.RewriteHost
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, t)))
}

func (p *Proxy) health(w http.ResponseWriter) {
	if !p.ready() {
		http.Error(w, "kingress: not synced", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// pick chooses a split at random, weighted by Percent; a split whose
// Percent is not positive is never chosen. It returns nil when none has a
// positive Percent.
func (p *Proxy) pick(splits []v1alpha1.IngressBackendSplit) *v1alpha1.IngressBackendSplit {
	total := 0
	for i := range splits {
		if splits[i].Percent > 0 {
			total += splits[i].Percent
		}
	}
	if total == 0 {
		return nil
	}
	n := p.intn(total)
	for i := range splits {
		if splits[i].Percent <= 0 {
			continue
		}
		if n < splits[i].Percent {
			return &splits[i]
		}
		n -= splits[i].Percent
	}
	return nil // unreachable: n < total
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	t, _ := pr.In.Context().Value(targetKey{}).(*target)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = t.addr
	pr.Out.Host = t.host
	pr.SetXForwarded()
	for k, v := range t.path.AppendHeaders {
		pr.Out.Header.Set(k, v)
	}
	for k, v := range t.split.AppendHeaders {
		pr.Out.Header.Set(k, v)
	}
}

func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		// The client went away; there is no one to answer.
		return
	}
	addr := ""
	if t, ok := r.Context().Value(targetKey{}).(*target); ok {
		addr = t.addr
	}
	p.log.Warn("kingress: forward failed", "host", r.Host, "path", r.URL.Path, "upstream", addr, "error", err)
	http.Error(w, "kingress: upstream "+addr+": "+err.Error(), http.StatusBadGateway)
}

// protoTransport sends HTTP/2 requests as h2c and the rest as HTTP/1, so a
// gRPC client's HTTP/2 reaches the backend as HTTP/2.
type protoTransport struct {
	h1, h2 http.RoundTripper
}

func (t protoTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.ProtoMajor == 2 {
		return t.h2.RoundTrip(r)
	}
	return t.h1.RoundTrip(r)
}

// newTransport returns the proxy's transport. It sets no response or
// overall timeout: Knative allows requests of up to 15 minutes.
func newTransport() http.RoundTripper {
	base := func(p *http.Protocols) *http.Transport {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		return &http.Transport{
			DialContext:         d.DialContext,
			Protocols:           p,
			MaxIdleConns:        1000,
			MaxIdleConnsPerHost: 100,
			IdleConnTimeout:     90 * time.Second,
		}
	}
	h1 := new(http.Protocols)
	h1.SetHTTP1(true)
	h2 := new(http.Protocols)
	h2.SetUnencryptedHTTP2(true)
	return protoTransport{h1: base(h1), h2: base(h2)}
}

// NewServer returns the listener's server for h on addr: HTTP/1.1 and
// cleartext HTTP/2 (h2c with prior knowledge, as gRPC clients speak it),
// with a deadline on request headers only, so long requests and streams
// are not cut.
func NewServer(addr string, h http.Handler) *http.Server {
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		Protocols:         protos,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
	}
}
