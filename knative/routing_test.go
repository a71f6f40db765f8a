package knative

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rickb777/date/period"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

// typePrefix is the prefix of council's event types (docs/CONVENTIONS.md).
const typePrefix = "dev.council."

// typePing is the type every PingSource event has; execute takes it as a
// sweep tick.
const typePing = sourcesv1.PingSourceEventType

// flow is what one function receives from the broker and what it sends
// back into it, by reply or, for execute, by posting to K_SINK.
type flow struct {
	function string
	consumes []string
	sends    []string
}

// flows is council's event flow (docs/CONVENTIONS.md, DESIGN.md section 3).
func flows() []flow {
	p := func(types ...string) []string {
		for i := range types {
			types[i] = typePrefix + types[i]
		}
		return types
	}
	return []flow{
		{
			function: "execute",
			consumes: p("deliberation.requested.v1", "proposal.generated.v1", "proposal.failed.v1",
				"critique.completed.v1", "critique.failed.v1", "sweep.tick.v1",
				"deliberation.cancel.v1", "review.decided.v1"),
			sends: p("deliberation.accepted.v1", "proposal.requested.v1", "critique.requested.v1",
				"deliberation.completed.v1", "deliberation.failed.v1",
				"deliberation.cancelled.v1", "review.requested.v1"),
		},
		{
			function: "generate",
			consumes: p("proposal.requested.v1"),
			sends:    p("proposal.generated.v1", "proposal.failed.v1"),
		},
		{
			function: "critique",
			consumes: p("critique.requested.v1"),
			sends:    p("critique.completed.v1", "critique.failed.v1"),
		},
	}
}

// isServiceRef reports whether ref names the Knative Service name.
func isServiceRef(ref *duckv1.KReference, name string) bool {
	return ref != nil && ref.APIVersion == "serving.knative.dev/v1" && ref.Kind == "Service" && ref.Name == name
}

// isBrokerRef reports whether ref names the Broker name.
func isBrokerRef(ref *duckv1.KReference, name string) bool {
	return ref != nil && ref.APIVersion == "eventing.knative.dev/v1" && ref.Kind == "Broker" && ref.Name == name
}

// subscriberOf returns the name of the Knative Service tr delivers to, or "".
func subscriberOf(tr *eventingv1.Trigger) string {
	ref := tr.Spec.Subscriber.Ref
	if ref == nil || ref.APIVersion != "serving.knative.dev/v1" || ref.Kind != "Service" {
		return ""
	}
	return ref.Name
}

// matchesType reports whether tr lets events of type typ through: its type
// filter is typ, or it has none (then it matches every type).
func matchesType(tr *eventingv1.Trigger, typ string) bool {
	if len(tr.Spec.Filters) > 0 {
		return true // a SQL-like filter: assume the worst
	}
	if tr.Spec.Filter == nil {
		return true
	}
	want, ok := tr.Spec.Filter.Attributes["type"]
	return !ok || want == "" || want == typ
}

// TestEachConsumedTypeHasOneTrigger checks that, in every deployable, each
// type a function consumes has exactly one Trigger, on the council broker,
// with that exact type filter, and that it delivers to that function.
func TestEachConsumedTypeHasOneTrigger(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			for _, f := range flows() {
				for _, typ := range f.consumes {
					var got []*eventingv1.Trigger
					for _, tr := range m.triggers {
						if tr.Spec.Filter != nil && tr.Spec.Filter.Attributes["type"] == typ {
							got = append(got, tr)
						}
					}
					if len(got) != 1 {
						t.Errorf("%s: %d Triggers filter on type %s (%v); want exactly 1", f.function, len(got), typ, names(got))
						continue
					}
					tr := got[0]
					if tr.Spec.Broker != "council" {
						t.Errorf("Trigger %s: broker %q; want council", tr.Name, tr.Spec.Broker)
					}
					if !isServiceRef(tr.Spec.Subscriber.Ref, f.function) {
						t.Errorf("Trigger %s (type %s): subscriber %+v; want Knative Service %s",
							tr.Name, typ, tr.Spec.Subscriber.Ref, f.function)
					}
				}
			}
		})
	}
}

// TestTriggersAreExact checks that every Trigger filters on one exact type
// (no match-all Trigger, no SQL filters) that its subscriber consumes, so
// the broker never delivers an event a function does not handle.
func TestTriggersAreExact(t *testing.T) {
	consumes := map[string][]string{}
	for _, f := range flows() {
		consumes[f.function] = f.consumes
	}
	consumes["execute"] = append(consumes["execute"], typePing)

	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			for _, tr := range m.triggers {
				if len(tr.Spec.Filters) > 0 {
					t.Errorf("Trigger %s: has spec.filters; want only an exact spec.filter", tr.Name)
				}
				if tr.Spec.Filter == nil || tr.Spec.Filter.Attributes["type"] == "" {
					t.Errorf("Trigger %s: no type filter; it would deliver every event", tr.Name)
					continue
				}
				typ := tr.Spec.Filter.Attributes["type"]
				fn := subscriberOf(tr)
				if !slices.Contains(consumes[fn], typ) {
					t.Errorf("Trigger %s: delivers %s to %q, which does not consume it", tr.Name, typ, fn)
				}
			}
		})
	}
}

// TestNoReplyLoops checks that no event a function sends can come back to
// the same function: no Trigger that matches one of its types delivers to
// it.
func TestNoReplyLoops(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			for _, f := range flows() {
				for _, typ := range f.sends {
					for _, tr := range m.triggers {
						if matchesType(tr, typ) && subscriberOf(tr) == f.function {
							t.Errorf("loop: %s sends %s and Trigger %s delivers it back to %s",
								f.function, typ, tr.Name, f.function)
						}
					}
				}
			}
		})
	}
}

// TestTriggerDelivery checks every Trigger's delivery: retries with
// exponential backoff, a dead-letter sink that is a Service of the same
// deployable, and a per-attempt timeout no shorter than the time its
// subscriber may take to start answering (else the broker would retry a
// request the function is still working on).
func TestTriggerDelivery(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			services := map[string]bool{}
			for _, s := range m.services {
				services[s.Name] = true
			}
			for _, tr := range m.triggers {
				d := tr.Spec.Delivery
				if d == nil {
					t.Errorf("Trigger %s: no delivery", tr.Name)
					continue
				}
				if d.Retry == nil || *d.Retry < 1 {
					t.Errorf("Trigger %s: retry %v; want at least 1", tr.Name, d.Retry)
				}
				if d.BackoffPolicy == nil || *d.BackoffPolicy != "exponential" || d.BackoffDelay == nil || *d.BackoffDelay != "PT1S" {
					t.Errorf("Trigger %s: backoff %v %v; want exponential PT1S", tr.Name, d.BackoffPolicy, d.BackoffDelay)
				}
				if d.DeadLetterSink == nil || !isServiceRef(d.DeadLetterSink.Ref, "council-dead-letter") {
					t.Errorf("Trigger %s: dead-letter sink %+v; want Service council-dead-letter", tr.Name, d.DeadLetterSink)
				}
				if !services["council-dead-letter"] {
					t.Errorf("Trigger %s: dead-letter Service council-dead-letter is not deployed", tr.Name)
				}
				if d.Timeout == nil {
					t.Errorf("Trigger %s: no delivery timeout", tr.Name)
					continue
				}
				p, err := period.Parse(*d.Timeout)
				if err != nil {
					t.Errorf("Trigger %s: timeout %q: %v", tr.Name, *d.Timeout, err)
					continue
				}
				timeout, _ := p.Duration()
				for _, s := range m.services {
					if s.Name != subscriberOf(tr) {
						continue
					}
					if rs := s.Spec.Template.Spec.ResponseStartTimeoutSeconds; rs == nil ||
						time.Duration(*rs)*time.Second > timeout {
						t.Errorf("Trigger %s: timeout %s is shorter than Service %s's responseStartTimeoutSeconds %v",
							tr.Name, timeout, s.Name, rs)
					}
				}
			}
		})
	}
}

// TestSweepClock checks that a PingSource sends to the council broker and
// that exactly one Trigger delivers its events, matched on the PingSource's
// own source, to execute.
func TestSweepClock(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			if len(m.pingSources) != 1 {
				t.Fatalf("%d PingSources (%v); want 1", len(m.pingSources), names(m.pingSources))
			}
			ps := m.pingSources[0]
			if !isBrokerRef(ps.Spec.Sink.Ref, "council") {
				t.Errorf("PingSource %s: sink %+v; want Broker council", ps.Name, ps.Spec.Sink.Ref)
			}
			want := map[string]string{
				"type":   typePing,
				"source": sourcesv1.PingSourceSource(ps.Namespace, ps.Name),
			}
			var got []string
			for _, tr := range m.triggers {
				if tr.Spec.Filter == nil || tr.Spec.Filter.Attributes["type"] != typePing {
					continue
				}
				got = append(got, tr.Name)
				if diff := cmp.Diff(want, map[string]string(tr.Spec.Filter.Attributes)); diff != "" {
					t.Errorf("Trigger %s: filter mismatch (-want +got):\n%s", tr.Name, diff)
				}
				if subscriberOf(tr) != "execute" {
					t.Errorf("Trigger %s: delivers ticks to %q; want execute", tr.Name, subscriberOf(tr))
				}
			}
			if len(got) != 1 {
				t.Errorf("Triggers on %s: %v; want exactly 1", typePing, got)
			}
		})
	}
}

// TestExecuteSink checks that execute, which fans work out by posting to
// K_SINK, and rayexecutor, which posts the requests of the old callers
// there, get the council broker as their sink from a SinkBinding, and that
// no other function has one (generate and critique answer by reply only).
func TestExecuteSink(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			bound := map[string]int{}
			for _, sb := range m.sinkBindings {
				subj := sb.Spec.Subject
				if subj.APIVersion != "serving.knative.dev/v1" || subj.Kind != "Service" || subj.Selector != nil {
					t.Errorf("SinkBinding %s: subject %+v; want one Knative Service by name", sb.Name, subj)
					continue
				}
				if !isBrokerRef(sb.Spec.Sink.Ref, "council") {
					t.Errorf("SinkBinding %s: sink %+v; want Broker council", sb.Name, sb.Spec.Sink.Ref)
				}
				bound[subj.Name]++
			}
			if diff := cmp.Diff(map[string]int{"execute": 1, "rayexecutor": 1}, bound); diff != "" {
				t.Errorf("SinkBinding subjects (-want +got):\n%s", diff)
			}
			if len(m.brokers) != 1 || m.brokers[0].Name != "council" {
				t.Errorf("Brokers %v; want exactly council", names(m.brokers))
			}
		})
	}
}
