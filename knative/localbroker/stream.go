package localbroker

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	"sigs.k8s.io/yaml"

	"council.dev/knative/kustomized"
)

// channelTemplateKey is the key of the Broker's config ConfigMap that holds
// the channel template (MTChannelBasedBroker).
const channelTemplateKey = "channel-template-spec"

// channelTemplate is the part of a NatsJetStreamChannel template the local
// Broker reads: its stream's retention settings.
type channelTemplate struct {
	Spec struct {
		Stream struct {
			Config struct {
				Storage string `json:"storage"`
				MaxAge  string `json:"maxAge"`
			} `json:"config"`
		} `json:"stream"`
	} `json:"spec"`
}

// streamConfig is the broker's JetStream stream, KN_BROKER_<ns>_<name> on
// subject kn.broker.<ns>.<name>, with the storage and maximum age of the
// NatsJetStreamChannel template the Broker's spec.config names (when the
// manifests hold it). WithMemoryStorage overrides the storage.
func streamConfig(br *eventingv1.Broker, m *kustomized.Manifests, o options) (jetstream.StreamConfig, error) {
	sc := jetstream.StreamConfig{
		Name:      "KN_BROKER_" + token(br.Namespace) + "_" + token(br.Name),
		Subjects:  []string{"kn.broker." + token(br.Namespace) + "." + token(br.Name)},
		Retention: jetstream.LimitsPolicy,
		Discard:   jetstream.DiscardOld,
		Storage:   o.storage,
	}
	tmpl, ok, err := brokerChannel(br, m)
	if err != nil || !ok {
		return sc, err
	}
	c := tmpl.Spec.Stream.Config
	if c.MaxAge != "" {
		if sc.MaxAge, err = time.ParseDuration(c.MaxAge); err != nil {
			return sc, fmt.Errorf("localbroker: Broker %s channel maxAge: %w", br.Name, err)
		}
	}
	if strings.EqualFold(c.Storage, "Memory") {
		sc.Storage = jetstream.MemoryStorage
	}
	return sc, nil
}

// brokerChannel reads the channel template of br's config ConfigMap; ok is
// false when the Broker names none or the manifests do not hold it.
func brokerChannel(br *eventingv1.Broker, m *kustomized.Manifests) (channelTemplate, bool, error) {
	var t channelTemplate
	ref := br.Spec.Config
	if ref == nil || ref.Kind != "ConfigMap" {
		return t, false, nil
	}
	for _, cm := range m.ConfigMaps {
		if cm.Name != ref.Name || cm.Namespace != namespaceOr(ref.Namespace, br.Namespace) {
			continue
		}
		s, ok := cm.Data[channelTemplateKey]
		if !ok {
			return t, false, nil
		}
		if err := yaml.Unmarshal([]byte(s), &t); err != nil {
			return t, false, fmt.Errorf("localbroker: ConfigMap %s %s: %w", cm.Name, channelTemplateKey, err)
		}
		return t, true, nil
	}
	return t, false, nil
}

// ingressPath is the broker-ingress path of a Broker.
func ingressPath(ns, name string) string { return "/" + ns + "/" + name }

// token makes s a valid part of a NATS stream, consumer or subject name:
// every character other than a letter, digit, - or _ becomes _.
func token(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}
