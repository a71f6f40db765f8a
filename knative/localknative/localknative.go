// Package localknative runs council on Knative's delivery contract on one
// machine: the shipped function binaries as Knative Services that scale
// from zero (package localserving), behind a Broker that behaves as
// Knative's (package localbroker), both configured by reading a
// kustomization of ours (package kustomized) — not by repeating it in code.
//
// From the manifests it takes: the Services (autoscaling annotations,
// containerConcurrency, timeouts, readiness probe, env and envFrom), the
// Broker and its Triggers (filters, delivery), the PingSources, and the
// SinkBindings (K_SINK = the broker ingress). What it replaces: the
// functions' NATS and LLM URLs (Env), the dead-letter Service (its
// event_display image cannot run here: a local sink records each dead
// letter, see DeadLetters), and Services with no binary (rayexecutor) are
// not run. Not reproduced: OIDC tokens and EventPolicies (the functions run
// without COUNCIL_AUTH_OIDC_*), NetworkPolicies, resources and
// securityContext.
package localknative

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	duckv1 "knative.dev/pkg/apis/duck/v1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"

	"council.dev/knative/kustomized"
	"council.dev/knative/localbroker"
	"council.dev/knative/localserving"
)

// Functions are the Services council ships a binary for, each built from
// functions/<name>/cmd/<name>.
var Functions = []string{"execute", "generate", "critique"}

// DeadLetterService is the Service our Triggers name as dead-letter sink.
const DeadLetterService = "council-dead-letter"

// Config is what Start runs.
type Config struct {
	// Dir is the kustomization to read (knative/overlays/dev, …).
	Dir string
	// JS is the JetStream the Broker keeps its stream on.
	JS jetstream.JetStream
	// Binaries gives each function's binary by Service name (BuildFunctions).
	Binaries map[string]string
	// Env overrides, for every function, what the manifests set
	// (COUNCIL_NATS_URL, COUNCIL_LLM_URL, …): the cluster's addresses
	// mean nothing here.
	Env map[string]string
	// Triggers are added to the manifests' own: an Orchestrator's, say.
	Triggers []*eventingv1.Trigger
	// Serving and Broker options (idle window, ping period, faults, …).
	Serving []localserving.Option
	Broker  []localbroker.Option
	// Logger logs; nil discards.
	Logger *slog.Logger
	// Output takes the functions' stdout and stderr; nil discards.
	Output io.Writer
}

// Cluster is a running local Knative: Close stops it.
type Cluster struct {
	// Broker is the Broker; Broker.URL() its ingress (K_SINK).
	Broker *localbroker.Broker
	// Serving runs the functions.
	Serving *localserving.Serving
	// Manifests are what was read.
	Manifests *kustomized.Manifests
	dls       *Recorder
}

// DeadLetters are the events the dead-letter sink received.
func (c *Cluster) DeadLetters() []Received { return c.dls.Events() }

// Close stops the Broker, then the functions, then the dead-letter sink.
func (c *Cluster) Close() error {
	var errs []error
	if c.Broker != nil {
		errs = append(errs, c.Broker.Close())
	}
	if c.Serving != nil {
		errs = append(errs, c.Serving.Close())
	}
	if c.dls != nil {
		errs = append(errs, c.dls.Close())
	}
	return errors.Join(errs...)
}

// Start reads cfg.Dir and starts its functions (at their min-scale, zero in
// our manifests) and its Broker.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.JS == nil {
		return nil, errors.New("localknative: a JetStream is required (the broker's stream)")
	}
	m, err := kustomized.Load(cfg.Dir)
	if err != nil {
		return nil, err
	}
	m.Triggers = append(m.Triggers, cfg.Triggers...)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{Manifests: m}
	ok := false
	defer func() {
		if !ok {
			_ = c.Close()
		}
	}()
	if c.dls, err = NewRecorder("dead letter", log); err != nil {
		return nil, err
	}
	// K_SINK must be in the functions' environment before the Broker can
	// resolve their URLs: take the ingress address first.
	addr, err := loopbackAddr(ctx)
	if err != nil {
		return nil, err
	}
	out := cfg.Output
	if out == nil {
		out = io.Discard
	}
	sopts := append([]localserving.Option{localserving.WithOutput(out), localserving.WithLogger(log)}, cfg.Serving...)
	if c.Serving, err = localserving.New(sopts...); err != nil {
		return nil, err
	}
	brokerName, ns, err := theBroker(m)
	if err != nil {
		return nil, err
	}
	ingress := fmt.Sprintf("http://%s/%s/%s", addr, ns, brokerName)
	sinks := sinkBound(m)
	for _, svc := range m.Services {
		bin, ok := cfg.Binaries[svc.Name]
		if !ok {
			continue
		}
		env, err := Environment(m, svc, cfg.Env)
		if err != nil {
			return nil, err
		}
		if sinks[svc.Name] {
			env = append(env, "K_SINK="+ingress)
		}
		if err := c.Serving.Add(svc, localserving.Command{Path: bin, Env: env}); err != nil {
			return nil, err
		}
	}
	resolve := func(ref duckv1.KReference) (string, error) {
		if ref.Kind != "Service" {
			return "", fmt.Errorf("localknative: no local %s", ref.Kind)
		}
		if ref.Name == DeadLetterService {
			return c.dls.URL(), nil
		}
		if u := c.Serving.URL(ref.Name); u != "" {
			return u, nil
		}
		return "", fmt.Errorf("localknative: Service %s has no binary here", ref.Name)
	}
	bopts := append([]localbroker.Option{localbroker.WithAddr(addr), localbroker.WithLogger(log)}, cfg.Broker...)
	if c.Broker, err = localbroker.New(ctx, cfg.JS, m, resolve, bopts...); err != nil {
		return nil, err
	}
	if c.Broker.URL() != ingress {
		return nil, fmt.Errorf("localknative: broker ingress at %s, K_SINK says %s", c.Broker.URL(), ingress)
	}
	ok = true
	return c, nil
}

// theBroker names the manifests' one Broker and its namespace.
func theBroker(m *kustomized.Manifests) (name, ns string, err error) {
	if len(m.Brokers) != 1 {
		return "", "", fmt.Errorf("localknative: want one Broker in the manifests, found %d", len(m.Brokers))
	}
	b := m.Brokers[0]
	ns = b.Namespace
	if ns == "" {
		ns = "default"
	}
	return b.Name, ns, nil
}

// sinkBound names the Services a SinkBinding gives the broker as K_SINK.
func sinkBound(m *kustomized.Manifests) map[string]bool {
	out := map[string]bool{}
	for _, sb := range m.SinkBindings {
		ref := sb.Spec.Subject
		if ref.Kind == "Service" && ref.Name != "" && sb.Spec.Sink.Ref != nil && sb.Spec.Sink.Ref.Kind == "Broker" {
			out[ref.Name] = true
		}
	}
	return out
}

// Environment is the environment of svc's container as Kubernetes would
// give it — its envFrom ConfigMaps and Secrets, then its env (literal
// values and secretKeyRefs to Secrets of the manifests) — with the OIDC
// settings left out (no token is sent here), then overrides on top, and
// PATH and HOME from this process. Sorted, one entry per name.
func Environment(m *kustomized.Manifests, svc *servingv1.Service, overrides map[string]string) ([]string, error) {
	if len(svc.Spec.Template.Spec.Containers) != 1 {
		return nil, fmt.Errorf("localknative: Service %s: want one container, found %d", svc.Name, len(svc.Spec.Template.Spec.Containers))
	}
	ctr := svc.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	for _, from := range ctr.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := configMap(m, from.ConfigMapRef.Name)
			if cm == nil {
				if optional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("localknative: Service %s: ConfigMap %s not in the manifests", svc.Name, from.ConfigMapRef.Name)
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = v
			}
		case from.SecretRef != nil:
			s := secret(m, from.SecretRef.Name)
			if s == nil {
				if optional(from.SecretRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("localknative: Service %s: Secret %s not in the manifests", svc.Name, from.SecretRef.Name)
			}
			for k, v := range secretData(s) {
				env[from.Prefix+k] = v
			}
		}
	}
	for _, e := range ctr.Env {
		if strings.HasPrefix(e.Name, "COUNCIL_AUTH_OIDC_") {
			continue
		}
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if ref == nil {
			return nil, fmt.Errorf("localknative: Service %s: env %s: only values and secretKeyRefs are supported", svc.Name, e.Name)
		}
		s := secret(m, ref.Name)
		v, found := "", false
		if s != nil {
			v, found = secretData(s)[ref.Key]
		}
		switch {
		case found:
			env[e.Name] = v
		case !optional(ref.Optional):
			return nil, fmt.Errorf("localknative: Service %s: env %s: Secret %s key %s not in the manifests", svc.Name, e.Name, ref.Name, ref.Key)
		}
	}
	for k, v := range overrides {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out, nil
}

func optional(b *bool) bool { return b != nil && *b }

func configMap(m *kustomized.Manifests, name string) *corev1.ConfigMap {
	for _, cm := range m.ConfigMaps {
		if cm.Name == name {
			return cm
		}
	}
	return nil
}

func secret(m *kustomized.Manifests, name string) *corev1.Secret {
	for _, s := range m.Secrets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// secretData is a Secret's data and stringData, as the API server merges
// them.
func secretData(s *corev1.Secret) map[string]string {
	out := make(map[string]string, len(s.Data)+len(s.StringData))
	for k, v := range s.Data {
		out[k] = string(v)
	}
	for k, v := range s.StringData {
		out[k] = v
	}
	return out
}

// loopbackAddr is a free loopback address for the broker ingress.
func loopbackAddr(ctx context.Context) (string, error) {
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("localknative: %w", err)
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

var buildMu sync.Mutex

// BuildFunctions builds the shipped binaries of Functions — the main
// packages the images are built from — from the workspace at root into
// dir, and gives their paths by Service name.
func BuildFunctions(ctx context.Context, root, dir string) (map[string]string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	out := map[string]string{}
	for _, f := range Functions {
		args = append(args, "./functions/"+f+"/cmd/"+f)
		out[f] = filepath.Join(dir, f)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("localknative: go build: %w\n%s", err, b)
	}
	return out, nil
}
