package localbroker

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	"council.dev/knative/kustomized"
	"council.dev/shared/adapters/natsjs/natstest"
)

// services stands for council's Knative Services: one sink per Service
// the manifests refer to.
type services map[string]*sink

// resolve is the Resolver of the Services.
func (s services) resolve(ref duckv1.KReference) (string, error) {
	if ref.Kind != "Service" || ref.Namespace != "council" {
		return "", fmt.Errorf("no %s %s/%s", ref.Kind, ref.Namespace, ref.Name)
	}
	sk, ok := s[ref.Name]
	if !ok {
		return "", fmt.Errorf("no Service %s", ref.Name)
	}
	return sk.URL, nil
}

// load loads a kustomization and fails t when it does not.
func load(t *testing.T, dir string) *kustomized.Manifests {
	t.Helper()
	m, err := kustomized.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRetryCountFromManifests reads the Trigger delivery from kustomize
// output: the same failing generate is attempted 1+1 times with the
// manifests' retry 1 and 1+3 times with retry 3, then dead-lettered to
// council-dead-letter.
func TestRetryCountFromManifests(t *testing.T) {
	for _, tt := range []struct {
		dir   string
		tries int
	}{
		{"testdata/retry1", 2},
		{"testdata/retry3", 4},
	} {
		t.Run(tt.dir, func(t *testing.T) {
			svc := services{
				"execute":             newSink(t, nil),
				"generate":            newSink(t, status(http.StatusServiceUnavailable)),
				"critique":            newSink(t, nil),
				"council-dead-letter": newSink(t, nil),
			}
			e := startBroker(t, load(t, tt.dir), svc.resolve)
			mustPost(t, e.URL(), newEvent("p1", "dev.council.proposal.requested.v1"))
			dl := svc["council-dead-letter"].waitCount(t, 1)[0]
			if got := ns(e.rec.of("generate-proposal-requested", false)); !equalInts(got, upTo(tt.tries)) {
				t.Errorf("attempts %v; want %v", got, upTo(tt.tries))
			}
			checkDeadLetter(t, dl, "p1", svc["generate"].URL, http.StatusServiceUnavailable, "")
		})
	}
}

// TestPingSourceTicks runs the base manifests' PingSource every 20 ms
// instead of every five minutes: execute receives its ticks through the
// execute-sweep-ping Trigger.
func TestPingSourceTicks(t *testing.T) {
	svc := services{"execute": newSink(t, nil), "generate": newSink(t, nil), "critique": newSink(t, nil), "council-dead-letter": newSink(t, nil)}
	e := startBroker(t, load(t, "../base"), svc.resolve, WithPingPeriod(20*time.Millisecond))
	ticks := svc["execute"].waitCount(t, 2)
	for _, ev := range ticks[:2] {
		if ev.Type() != "dev.knative.sources.ping" || ev.Source() != "/apis/v1/namespaces/council/pingsources/council-sweep" ||
			string(ev.Data()) != "{}" || ev.DataContentType() != "application/json" {
			t.Errorf("tick %s %s %q %s; want a ping from council-sweep with data {}", ev.Type(), ev.Source(), ev.Data(), ev.DataContentType())
		}
	}
	if ticks[0].ID() == ticks[1].ID() {
		t.Errorf("two ticks with id %s; want one id each", ticks[0].ID())
	}
	if len(e.rec.of("execute-sweep-ping", false)) == 0 {
		t.Error("no attempt recorded for execute-sweep-ping")
	}
}

// TestScheduleParsesAsKnative checks the manifests' schedules parse with
// mtping's parser, and that a bad one or an unknown timezone is an error
// from New.
func TestScheduleParsesAsKnative(t *testing.T) {
	for _, dir := range []string{"../base", "../overlays/prod"} {
		for _, ps := range load(t, dir).PingSources {
			if _, err := cronParser.Parse(ps.Spec.Schedule); err != nil {
				t.Errorf("%s: PingSource %s: %v", dir, ps.Name, err)
			}
		}
	}
	_, _, js := natstest.Start(t)
	svc := services{"execute": newSink(t, nil), "generate": newSink(t, nil), "critique": newSink(t, nil), "council-dead-letter": newSink(t, nil)}
	for name, change := range map[string]func(*kustomized.Manifests){
		"bad schedule": func(m *kustomized.Manifests) { m.PingSources[0].Spec.Schedule = "every minute" },
		"bad timezone": func(m *kustomized.Manifests) { m.PingSources[0].Spec.Timezone = "Mars/Olympus" },
	} {
		m := load(t, "../base")
		change(m)
		b, err := New(context.Background(), js, m, svc.resolve, WithMemoryStorage())
		if err == nil {
			_ = b.Close()
			t.Errorf("%s: New: no error", name)
		} else if !strings.Contains(err.Error(), "council-sweep") {
			t.Errorf("%s: New: %v; want an error naming the PingSource", name, err)
		}
	}
}

// TestNewRejects checks New's clear errors: a Trigger with spec.filters, a
// Service the resolver does not know.
func TestNewRejects(t *testing.T) {
	_, _, js := natstest.Start(t)
	all := services{"execute": newSink(t, nil), "generate": newSink(t, nil), "critique": newSink(t, nil), "council-dead-letter": newSink(t, nil)}
	noGenerate := services{"execute": all["execute"], "critique": all["critique"], "council-dead-letter": all["council-dead-letter"]}
	withFilters := load(t, "../base")
	withFilters.Triggers[0].Spec.Filters = []eventingv1.SubscriptionsAPIFilter{{CESQL: "type = 'x'"}}
	tests := []struct {
		name    string
		m       *kustomized.Manifests
		resolve Resolver
		want    string
	}{
		{"spec.filters", withFilters, all.resolve, "spec.filters"},
		{"unknown Service", load(t, "../base"), noGenerate.resolve, "Service generate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(context.Background(), js, tt.m, tt.resolve, WithMemoryStorage())
			if err == nil {
				_ = b.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q; want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestStreamFromChannelTemplate checks the broker stream takes the
// NatsJetStreamChannel template's storage and maximum age.
func TestStreamFromChannelTemplate(t *testing.T) {
	m := load(t, "../base")
	sc, err := streamConfig(m.Brokers[0], m, defaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if sc.Name != "KN_BROKER_council_council" || sc.Storage != jetstream.FileStorage || sc.MaxAge != 168*time.Hour {
		t.Errorf("stream %s, storage %v, max age %v; want KN_BROKER_council_council, file, 168h", sc.Name, sc.Storage, sc.MaxAge)
	}
}
