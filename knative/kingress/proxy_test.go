package kingress

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/intstr"
	"knative.dev/networking/pkg/apis/networking/v1alpha1"
)

// seen is what an echo backend reports about the request it received.
type seen struct {
	Backend string
	Host    string
	Path    string
	Proto   int
	Headers map[string]string
}

// echoHeaders are the request headers an echo backend reports.
var echoHeaders = []string{"Knative-Serving-Revision", "Knative-Serving-Namespace", "K-Path", "X-Forwarded-Host"}

// backends starts one echo server per name and returns the upstream
// function that sends a backend to the server named by its ServiceName.
func backends(t *testing.T, names ...string) func(v1alpha1.IngressBackend) string {
	t.Helper()
	addrs := map[string]string{}
	for _, name := range names {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := seen{Backend: name, Host: r.Host, Path: r.URL.Path, Proto: r.ProtoMajor, Headers: map[string]string{}}
			for _, h := range echoHeaders {
				if v := r.Header.Get(h); v != "" {
					s.Headers[h] = v
				}
			}
			_ = json.NewEncoder(w).Encode(s)
		}))
		t.Cleanup(srv.Close)
		addrs[name] = srv.Listener.Addr().String()
	}
	return func(b v1alpha1.IngressBackend) string {
		addr, ok := addrs[b.ServiceName]
		if !ok {
			t.Errorf("request sent to unknown backend %+v", b)
			return "127.0.0.1:1"
		}
		return addr
	}
}

func split(name string, percent int, headers map[string]string) v1alpha1.IngressBackendSplit {
	return v1alpha1.IngressBackendSplit{
		IngressBackend: v1alpha1.IngressBackend{ServiceNamespace: "council", ServiceName: name, ServicePort: intstr.FromInt32(80)},
		Percent:        percent,
		AppendHeaders:  headers,
	}
}

// routes is an Ingress's rules the way Knative Serving writes them for a
// cluster-local Service with a tagged revision, plus a domain mapping and
// a host that serves one path only.
func routes() []v1alpha1.IngressRule {
	return []v1alpha1.IngressRule{{
		Hosts:      []string{"generate.council", "generate.council.svc", "generate.council.svc.cluster.local"},
		Visibility: v1alpha1.IngressVisibilityClusterLocal,
		HTTP: &v1alpha1.HTTPIngressRuleValue{Paths: []v1alpha1.HTTPIngressPath{{
			Headers:       map[string]v1alpha1.HeaderMatch{"Knative-Serving-Tag": {Exact: "canary"}},
			AppendHeaders: map[string]string{"K-Path": "tagged"},
			Splits:        []v1alpha1.IngressBackendSplit{split("canary", 100, map[string]string{"Knative-Serving-Revision": "generate-00002"})},
		}, {
			Path:   "/api",
			Splits: []v1alpha1.IngressBackendSplit{split("api", 100, nil)},
		}, {
			AppendHeaders: map[string]string{"Knative-Serving-Namespace": "council"},
			Splits:        []v1alpha1.IngressBackendSplit{split("main", 100, map[string]string{"Knative-Serving-Revision": "generate-00001"})},
		}}},
	}, {
		Hosts: []string{"generate.example.com"},
		HTTP: &v1alpha1.HTTPIngressRuleValue{Paths: []v1alpha1.HTTPIngressPath{{
			Path:        "/",
			RewriteHost: "generate.council.svc.cluster.local",
			Splits:      []v1alpha1.IngressBackendSplit{split("main", 100, nil)},
		}}},
	}, {
		Hosts: []string{"narrow.council.svc.cluster.local"},
		HTTP: &v1alpha1.HTTPIngressRuleValue{Paths: []v1alpha1.HTTPIngressPath{{
			Path:   "/v1/",
			Splits: []v1alpha1.IngressBackendSplit{split("api", 100, nil)},
		}}},
	}}
}

func newProxy(t *testing.T, table *Table, opts ...ProxyOption) *Proxy {
	t.Helper()
	p, err := NewProxy(table, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProxyRoutes(t *testing.T) {
	table := NewTable()
	table.Set("council/generate", routes())
	srv := httptest.NewServer(newProxy(t, table, WithUpstream(backends(t, "main", "api", "canary"))))
	t.Cleanup(srv.Close)

	tests := []struct {
		name     string
		host     string
		path     string
		header   http.Header
		wantCode int
		want     seen
		wantBody string // for errors: a substring of the body
	}{{
		name: "cluster-local host with port", host: "generate.council.svc.cluster.local:80", path: "/hello",
		wantCode: 200,
		want: seen{Backend: "main", Host: "generate.council.svc.cluster.local:80", Path: "/hello", Proto: 1, Headers: map[string]string{
			"Knative-Serving-Revision": "generate-00001", "Knative-Serving-Namespace": "council",
			"X-Forwarded-Host": "generate.council.svc.cluster.local:80",
		}},
	}, {
		name: "short host without port, any case", host: "Generate.Council", path: "/",
		wantCode: 200,
		want: seen{Backend: "main", Host: "Generate.Council", Path: "/", Proto: 1, Headers: map[string]string{
			"Knative-Serving-Revision": "generate-00001", "Knative-Serving-Namespace": "council", "X-Forwarded-Host": "Generate.Council",
		}},
	}, {
		name: "path prefix", host: "generate.council.svc", path: "/api/v1/things",
		wantCode: 200,
		want:     seen{Backend: "api", Host: "generate.council.svc", Path: "/api/v1/things", Proto: 1, Headers: map[string]string{"X-Forwarded-Host": "generate.council.svc"}},
	}, {
		name: "header match wins over later paths", host: "generate.council", path: "/api/x",
		header:   http.Header{"Knative-Serving-Tag": {"canary"}},
		wantCode: 200,
		want: seen{Backend: "canary", Host: "generate.council", Path: "/api/x", Proto: 1, Headers: map[string]string{
			"Knative-Serving-Revision": "generate-00002", "K-Path": "tagged", "X-Forwarded-Host": "generate.council",
		}},
	}, {
		name: "header that does not match exactly falls through", host: "generate.council", path: "/",
		header:   http.Header{"Knative-Serving-Tag": {"canary2"}, "Knative-Serving-Revision": {"forged"}},
		wantCode: 200,
		want: seen{Backend: "main", Host: "generate.council", Path: "/", Proto: 1, Headers: map[string]string{
			"Knative-Serving-Revision": "generate-00001", "Knative-Serving-Namespace": "council", "X-Forwarded-Host": "generate.council",
		}},
	}, {
		name: "rewrite host", host: "generate.example.com", path: "/x",
		wantCode: 200,
		want: seen{Backend: "main", Host: "generate.council.svc.cluster.local", Path: "/x", Proto: 1, Headers: map[string]string{
			"X-Forwarded-Host": "generate.example.com",
		}},
	}, {
		name: "unknown host", host: "critique.council.svc.cluster.local", path: "/",
		wantCode: 404, wantBody: `no ingress rule for host "critique.council.svc.cluster.local"`,
	}, {
		name: "no path matches", host: "narrow.council.svc.cluster.local", path: "/v2/x",
		wantCode: 404, wantBody: "no ingress path matches",
	}, {
		name: "unrouted host answers health", host: "10.0.0.7:8080", path: HealthPath,
		wantCode: 200, wantBody: "ok",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tc.host
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status = %d, want %d; body %q", resp.StatusCode, tc.wantCode, body)
			}
			if tc.wantBody != "" {
				if !strings.Contains(string(body), tc.wantBody) {
					t.Fatalf("body = %q, want it to contain %q", body, tc.wantBody)
				}
				return
			}
			var got seen
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("decode %q: %v", body, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("backend saw (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProxyHealth(t *testing.T) {
	ready := false
	p := newProxy(t, NewTable(), WithReady(func() bool { return ready }))
	get := func() int {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "http://10.1.2.3:8080"+HealthPath, nil))
		return w.Code
	}
	if code := get(); code != http.StatusServiceUnavailable {
		t.Errorf("before sync: %s = %d, want 503", HealthPath, code)
	}
	ready = true
	if code := get(); code != http.StatusOK {
		t.Errorf("after sync: %s = %d, want 200", HealthPath, code)
	}
}

func TestProxySplitPercentages(t *testing.T) {
	table := NewTable()
	table.Set("council/generate", []v1alpha1.IngressRule{{
		Hosts: []string{"generate.council"},
		HTTP: &v1alpha1.HTTPIngressRuleValue{Paths: []v1alpha1.HTTPIngressPath{{
			Splits: []v1alpha1.IngressBackendSplit{
				split("old", 0, nil),
				split("main", 90, map[string]string{"Knative-Serving-Revision": "generate-00001"}),
				split("canary", 10, map[string]string{"Knative-Serving-Revision": "generate-00002"}),
			},
		}}},
	}})
	p := newProxy(t, table, WithUpstream(backends(t, "old", "main", "canary")), WithRand(rand.New(rand.NewPCG(1, 2))))

	const n = 2000
	counts := map[string]int{}
	for range n {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "http://generate.council/", nil))
		var got seen
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatalf("status %d, body %q: %v", w.Code, w.Body, err)
		}
		if got.Headers["Knative-Serving-Revision"] != map[string]string{"main": "generate-00001", "canary": "generate-00002"}[got.Backend] {
			t.Fatalf("backend %s got revision header %q", got.Backend, got.Headers["Knative-Serving-Revision"])
		}
		counts[got.Backend]++
	}
	if counts["old"] != 0 {
		t.Errorf("a 0%% split got %d of %d requests", counts["old"], n)
	}
	// 10% of 2000 is 200, with a standard deviation of about 13.
	if c := counts["canary"]; c < 150 || c > 250 {
		t.Errorf("the 10%% split got %d of %d requests, want about 200; counts %v", c, n, counts)
	}
	if counts["main"]+counts["canary"] != n {
		t.Errorf("counts %v do not add up to %d", counts, n)
	}
}

// TestProxyFlushes checks that a streamed response reaches the client
// while the upstream is still writing it.
func TestProxyFlushes(t *testing.T) {
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = io.WriteString(w, "{\"n\":1}\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "{\"n\":2}\n")
	}))
	t.Cleanup(upstream.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	table := NewTable()
	table.Set("council/stream", []v1alpha1.IngressRule{{
		Hosts: []string{"stream.council"},
		HTTP:  &v1alpha1.HTTPIngressRuleValue{Paths: []v1alpha1.HTTPIngressPath{{Splits: []v1alpha1.IngressBackendSplit{split("stream", 100, nil)}}}},
	}})
	addr := upstream.Listener.Addr().String()
	srv := httptest.NewServer(newProxy(t, table, WithUpstream(func(v1alpha1.IngressBackend) string { return addr })))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "stream.council"
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("first event did not arrive before the upstream finished: %v", err)
	}
	if line != "{\"n\":1}\n" {
		t.Fatalf("first line = %q", line)
	}
	close(release)
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(rest), "{\"n\":2}\n"; got != want {
		t.Errorf("rest = %q, want %q", got, want)
	}
}

// TestProxyH2C checks that a cleartext HTTP/2 request (as gRPC sends it)
// is forwarded as HTTP/2 to an h2c-only upstream, trailers included, and
// that an HTTP/1 request still goes out as HTTP/1.
func TestProxyH2C(t *testing.T) {
	h2only := new(http.Protocols)
	h2only.SetUnencryptedHTTP2(true)
	h2up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("Content-Type", "application/grpc")
		_, _ = io.WriteString(w, r.Proto)
		w.Header().Set("Grpc-Status", "0")
	}))
	h2up.Config.Protocols = h2only
	h2up.Start()
	t.Cleanup(h2up.Close)
	h1up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	t.Cleanup(h1up.Close)

	table := NewTable()
	table.Set("council/grpc", []v1alpha1.IngressRule{{
		Hosts: []string{"grpc.council"},
		HTTP:  &v1alpha1.HTTPIngressRuleValue{Paths: []v1alpha1.HTTPIngressPath{{Splits: []v1alpha1.IngressBackendSplit{split("h2", 100, nil)}}}},
	}, {
		Hosts: []string{"web.council"},
		HTTP:  &v1alpha1.HTTPIngressRuleValue{Paths: []v1alpha1.HTTPIngressPath{{Splits: []v1alpha1.IngressBackendSplit{split("h1", 100, nil)}}}},
	}})
	addrs := map[string]string{"h2": h2up.Listener.Addr().String(), "h1": h1up.Listener.Addr().String()}
	p := newProxy(t, table, WithUpstream(func(b v1alpha1.IngressBackend) string { return addrs[b.ServiceName] }))
	front := httptest.NewUnstartedServer(p)
	front.Config = NewServer("", p)
	front.Start()
	t.Cleanup(front.Close)

	h2c := &http.Transport{Protocols: h2only}
	t.Cleanup(h2c.CloseIdleConnections)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, front.URL+"/council.Generate/Run", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "grpc.council"
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := (&http.Client{Transport: h2c}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || string(body) != "HTTP/2.0" {
		t.Fatalf("h2c: status %d, client proto %s, upstream saw %q; want 200, HTTP/2.0, HTTP/2.0", resp.StatusCode, resp.Proto, body)
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("trailer Grpc-Status = %q, want 0", got)
	}

	req, err = http.NewRequestWithContext(t.Context(), http.MethodGet, front.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "web.council"
	resp, err = front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ProtoMajor != 1 || string(body) != "HTTP/1.1" {
		t.Fatalf("http/1: status %d, client proto %s, upstream saw %q; want 200, HTTP/1.1, HTTP/1.1", resp.StatusCode, resp.Proto, body)
	}
}
