package localbroker

import (
	"encoding/base64"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/robfig/cron/v3"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
)

// cronParser parses schedules as Knative's mtping adapter does
// (pkg/adapter/mtping/adapter.go, Eventing v1.15.2).
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// startPings starts every PingSource of sources whose sink is this Broker:
// on its schedule (in spec.timezone when set), or every WithPingPeriod.
func (b *Broker) startPings(sources []*sourcesv1.PingSource) error {
	for _, ps := range sources {
		ns := namespaceOr(ps.Namespace, b.ns)
		ref := ps.Spec.Sink.Ref
		if ref == nil || ref.Kind != "Broker" || ref.Name != b.name || namespaceOr(ref.Namespace, ns) != b.ns {
			continue
		}
		tmpl, err := pingEvent(ps, ns)
		if err != nil {
			return fmt.Errorf("localbroker: PingSource %s: %w", ps.Name, err)
		}
		tick := func() { b.ping(ps.Name, tmpl) }
		if b.opts.pingPeriod > 0 {
			b.wg.Add(1)
			go b.every(b.opts.pingPeriod, tick)
			continue
		}
		schedule := ps.Spec.Schedule
		if ps.Spec.Timezone != "" {
			schedule = "CRON_TZ=" + ps.Spec.Timezone + " " + schedule
		}
		if _, err := cronParser.Parse(schedule); err != nil {
			return fmt.Errorf("localbroker: PingSource %s: schedule %q: %w", ps.Name, schedule, err)
		}
		if b.cron == nil {
			b.cron = cron.New(cron.WithParser(cronParser))
			b.cron.Start()
		}
		if _, err := b.cron.AddFunc(schedule, tick); err != nil {
			return fmt.Errorf("localbroker: PingSource %s: schedule %q: %w", ps.Name, schedule, err)
		}
	}
	return nil
}

// pingEvent is the event a PingSource sends, as mtping's makeEvent builds
// it: type dev.knative.sources.ping, source
// /apis/v1/namespaces/<ns>/pingsources/<name>, the ceOverrides extensions,
// and spec.dataBase64 (else spec.data) as data of spec.contentType.
func pingEvent(ps *sourcesv1.PingSource, ns string) (event.Event, error) {
	ev := event.New()
	ev.SetType(sourcesv1.PingSourceEventType)
	ev.SetSource(sourcesv1.PingSourceSource(ns, ps.Name))
	if o := ps.Spec.CloudEventOverrides; o != nil {
		for k, v := range o.Extensions {
			ev.SetExtension(k, v)
		}
	}
	var data []byte
	switch {
	case ps.Spec.DataBase64 != "":
		d, err := base64.StdEncoding.DecodeString(ps.Spec.DataBase64)
		if err != nil {
			return ev, fmt.Errorf("dataBase64: %w", err)
		}
		data = d
	case ps.Spec.Data != "":
		data = []byte(ps.Spec.Data)
	}
	if data != nil {
		if err := ev.SetData(ps.Spec.ContentType, data); err != nil {
			return ev, fmt.Errorf("data: %w", err)
		}
	}
	return ev, nil
}

// ping publishes one tick of the PingSource name into the broker. A tick
// that cannot be persisted is lost, as mtping loses it, with an error
// logged.
func (b *Broker) ping(name string, tmpl event.Event) {
	ev := tmpl.Clone()
	ev.SetID(uuid.NewString())
	ev.SetTime(time.Now())
	if err := b.publish(b.base, &ev); err != nil && b.base.Err() == nil {
		b.log().Error("localbroker: PingSource tick lost", "pingsource", name, "id", ev.ID(), "error", err)
	}
}

// every calls f every d until the Broker closes.
func (b *Broker) every(d time.Duration, f func()) {
	defer b.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-b.base.Done():
			return
		case <-t.C:
			f()
		}
	}
}
