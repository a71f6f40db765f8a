package knative

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	messagingv1 "knative.dev/eventing/pkg/apis/messaging/v1"
	"sigs.k8s.io/yaml"
)

// checkURL returns why v is not an absolute URL with one of schemes, or "".
func checkURL(v string, schemes ...string) string {
	u, err := url.Parse(v)
	switch {
	case err != nil:
		return err.Error()
	case !slices.Contains(schemes, u.Scheme):
		return "scheme " + u.Scheme + " is not one of " + strings.Join(schemes, ", ")
	case u.Host == "":
		return "no host"
	}
	return ""
}

// TestCouncilConfig checks the ConfigMap council-config of every
// deployable against docs/CONVENTIONS.md: only documented variables, each
// with a value the function host accepts. PORT (set by Knative), K_SINK (set
// by the SinkBinding), COUNCIL_SOURCE (per function) and COUNCIL_LLM_API_KEY
// (a Secret) must not be in it.
func TestCouncilConfig(t *testing.T) {
	positiveDuration := func(v string) string {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			return "want a positive duration"
		}
		return ""
	}
	checks := map[string]func(string) string{
		"COUNCIL_TRANSPORT": func(v string) string {
			if v != "http" {
				return `want "http": on Knative the functions receive CloudEvents over HTTP`
			}
			return ""
		},
		"COUNCIL_NATS_URL": func(v string) string { return checkURL(v, "nats", "tls", "ws", "wss") },
		"COUNCIL_LLM_URL":  func(v string) string { return checkURL(v, "http", "https") },
		"COUNCIL_LLM_MODEL": func(v string) string {
			if v == "" {
				return "want a model name"
			}
			return ""
		},
		"COUNCIL_LLM_MODELS":  func(string) string { return "" }, // checked with COUNCIL_LLM_MODEL below
		"COUNCIL_LLM_TIMEOUT": positiveDuration,
		"COUNCIL_LLM_RETRIES": func(v string) string {
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				return "want a whole number >= 0"
			}
			return ""
		},
		"COUNCIL_RAY_ADDRESS": func(v string) string {
			if v == "" {
				return ""
			}
			return checkURL(v, "http", "https")
		},
		"COUNCIL_RAY_AGENT_DIR": func(string) string { return "" }, // a path or a URI
		"COUNCIL_LEGACY_SUBJECTS": func(v string) string {
			if v != "true" && v != "false" {
				return `want "true" or "false"`
			}
			return ""
		},
		"COUNCIL_NATS_SETUP": func(v string) string {
			if v != "bind" {
				return `want "bind": the council-setup Job sets the NATS topology up once, a cold start only binds to it`
			}
			return ""
		},
		"COUNCIL_LOG_LEVEL": func(v string) string {
			if !slices.Contains([]string{"debug", "info", "warn", "error"}, v) {
				return "want debug, info, warn or error"
			}
			return ""
		},
	}
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			cfg := configMap(t, m, "council-config").Data
			for k, v := range cfg {
				check, ok := checks[k]
				if !ok {
					t.Errorf("council-config: %s is not a variable council-config may set", k)
					continue
				}
				if why := check(v); why != "" {
					t.Errorf("council-config: %s=%q: %s", k, v, why)
				}
			}
			if models := cfg["COUNCIL_LLM_MODELS"]; models != "" {
				var list []string
				for m := range strings.SplitSeq(models, ",") {
					list = append(list, strings.TrimSpace(m))
				}
				if !slices.Contains(list, cfg["COUNCIL_LLM_MODEL"]) {
					t.Errorf("council-config: COUNCIL_LLM_MODELS %q lacks COUNCIL_LLM_MODEL %q", models, cfg["COUNCIL_LLM_MODEL"])
				}
			}
			for _, cm := range m.configMaps {
				if _, ok := cm.Data["COUNCIL_LLM_API_KEY"]; ok {
					t.Errorf("ConfigMap %s holds COUNCIL_LLM_API_KEY; it belongs in the Secret council-secrets", cm.Name)
				}
			}
		})
	}
}

// natsChannelSpec mirrors the part of eventing-natss's
// NatsJetStreamChannelSpec (messaging.knative.dev/v1alpha1) that
// council-broker-channel sets; decoding strictly into it catches a
// misspelt field, which eventing-natss would silently ignore.
type natsChannelSpec struct {
	Stream struct {
		Config struct {
			Retention       string          `json:"retention"`
			Storage         string          `json:"storage"`
			Discard         string          `json:"discard"`
			MaxAge          metav1.Duration `json:"maxAge"`
			DuplicateWindow metav1.Duration `json:"duplicateWindow"`
			Replicas        int             `json:"replicas"`
		} `json:"config"`
	} `json:"stream"`
}

// TestBrokerChannel checks the Broker is an MTChannelBasedBroker whose
// channel template, read the way the broker controller reads it, makes a
// NatsJetStreamChannel with a durable (file, limits) stream, replicated as
// much as council's own JetStream objects (council-nats).
func TestBrokerChannel(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			if len(m.brokers) != 1 {
				t.Fatalf("Brokers %v; want 1", names(m.brokers))
			}
			b := m.brokers[0]
			if class := b.Annotations["eventing.knative.dev/broker.class"]; class != "MTChannelBasedBroker" {
				t.Errorf("Broker %s: class %q; want MTChannelBasedBroker", b.Name, class)
			}
			ref := b.Spec.Config
			if ref == nil || ref.APIVersion != "v1" || ref.Kind != "ConfigMap" {
				t.Fatalf("Broker %s: config %+v; want a ConfigMap", b.Name, ref)
			}
			cm := configMap(t, m, ref.Name)

			var tmpl messagingv1.ChannelTemplateSpec
			if err := yaml.UnmarshalStrict([]byte(cm.Data["channel-template-spec"]), &tmpl); err != nil {
				t.Fatalf("ConfigMap %s: channel-template-spec: %v", cm.Name, err)
			}
			if tmpl.APIVersion != "messaging.knative.dev/v1alpha1" || tmpl.Kind != "NatsJetStreamChannel" {
				t.Errorf("ConfigMap %s: channel %s %s; want messaging.knative.dev/v1alpha1 NatsJetStreamChannel",
					cm.Name, tmpl.APIVersion, tmpl.Kind)
			}
			if tmpl.Spec == nil {
				t.Fatalf("ConfigMap %s: channel template has no spec", cm.Name)
			}
			var spec natsChannelSpec
			if err := yaml.UnmarshalStrict(tmpl.Spec.Raw, &spec); err != nil {
				t.Fatalf("ConfigMap %s: channel spec: %v", cm.Name, err)
			}
			sc := spec.Stream.Config
			if sc.Retention != "Limits" || sc.Storage != "File" {
				t.Errorf("channel stream: retention %q storage %q; want Limits File (events survive delivery and restarts)",
					sc.Retention, sc.Storage)
			}
			if sc.MaxAge.Duration < 24*time.Hour {
				t.Errorf("channel stream: maxAge %s; want at least a day, to replay after an outage", sc.MaxAge.Duration)
			}
			if sc.DuplicateWindow.Duration <= 0 || sc.DuplicateWindow.Duration > sc.MaxAge.Duration {
				t.Errorf("channel stream: duplicateWindow %s; want within (0, maxAge]", sc.DuplicateWindow.Duration)
			}
			nats := configMap(t, m, "council-nats").Data
			if want := strconv.Itoa(sc.Replicas); nats["COUNCIL_NATS_REPLICAS"] != want {
				t.Errorf("council-nats COUNCIL_NATS_REPLICAS %q; want the channel stream's %s",
					nats["COUNCIL_NATS_REPLICAS"], want)
			}
		})
	}
}

// TestNATSConfig checks council-nats names the JetStream objects of
// docs/CONVENTIONS.md: the KV bucket council-deliberations and the token
// stream COUNCIL_TOKENS on council.stream.>, keeping tokens for an hour.
func TestNATSConfig(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			nats := configMap(t, m, "council-nats").Data
			for k, want := range map[string]string{
				"COUNCIL_NATS_BUCKET":          "council-deliberations",
				"COUNCIL_NATS_INDEX_BUCKET":    "council-index",
				"COUNCIL_NATS_TOKENS_STREAM":   "COUNCIL_TOKENS",
				"COUNCIL_NATS_TOKENS_SUBJECTS": "council.stream.>",
			} {
				if nats[k] != want {
					t.Errorf("council-nats %s %q; want %q", k, nats[k], want)
				}
			}
			if d, err := time.ParseDuration(nats["COUNCIL_NATS_TOKENS_MAX_AGE"]); err != nil || d != time.Hour {
				t.Errorf("council-nats COUNCIL_NATS_TOKENS_MAX_AGE %q; want 1h", nats["COUNCIL_NATS_TOKENS_MAX_AGE"])
			}
			if n, err := strconv.Atoi(nats["COUNCIL_NATS_REPLICAS"]); err != nil || n < 1 {
				t.Errorf("council-nats COUNCIL_NATS_REPLICAS %q; want a number >= 1", nats["COUNCIL_NATS_REPLICAS"])
			}
		})
	}
}
