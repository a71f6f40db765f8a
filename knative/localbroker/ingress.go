package localbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"
)

// arrivalTime is the extension Knative's ingress stamps every event with
// (knative.dev/eventing/pkg/broker EventArrivalTime).
const arrivalTime = "knativearrivaltime"

// errTooLarge is an event larger than the NATS server takes in a message.
var errTooLarge = errors.New("event larger than the NATS maximum payload")

// ServeHTTP is the broker ingress, as Knative's (pkg/broker/ingress,
// Eventing v1.15.2): OPTIONS answers the CloudEvents webhook handshake;
// POST takes one CloudEvent, binary or structured, at /<namespace>/<broker>
// or at / (a local convenience: Knative answers 404 there). It answers 400
// to what is not a valid CloudEvent, 413 to an event NATS cannot hold, 500
// when the event could not be persisted (as Knative's ingress answers a
// failed dispatch to its channel) and 202 once JetStream has acknowledged
// it.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "POST, OPTIONS")
	if r.URL.Path != "/" && r.URL.Path != ingressPath(b.ns, b.name) && r.URL.Path != ingressPath(b.ns, b.name)+"/" {
		http.Error(w, "no such broker", http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodOptions:
		w.Header().Set("WebHook-Allowed-Origin", "*")
		w.Header().Set("WebHook-Allowed-Rate", "*")
		w.WriteHeader(http.StatusOK)
		return
	case http.MethodPost:
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	msg := cehttp.NewMessageFromHttpRequest(r)
	defer func() { _ = msg.Finish(nil) }()
	ev, err := binding.ToEvent(r.Context(), msg)
	if err != nil {
		b.log().Warn("localbroker: ingress: not a CloudEvent", "error", err)
		http.Error(w, "not a CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := ev.Validate(); err != nil {
		b.log().Warn("localbroker: ingress: invalid CloudEvent", "error", err)
		http.Error(w, "invalid CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := b.publish(r.Context(), ev); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, errTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		b.log().Error("localbroker: ingress: event not persisted", "id", ev.ID(), "type", ev.Type(), "error", err)
		http.Error(w, err.Error(), code)
		return
	}
	b.log().Debug("localbroker: ingress: accepted", "id", ev.ID(), "type", ev.Type())
	w.WriteHeader(http.StatusAccepted)
}

// publish persists ev in the broker's stream, with the knativearrivaltime
// extension Knative's ingress adds, and returns once JetStream has
// acknowledged it (or WithPublishTimeout has passed). No Nats-Msg-Id is set:
// the NATS channel does not deduplicate, so neither does this.
func (b *Broker) publish(ctx context.Context, ev *event.Event) error {
	c := ev.Clone()
	ev = &c
	ev.SetExtension(arrivalTime, types.Timestamp{Time: time.Now()})
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("localbroker: encode event %s: %w", ev.ID(), err)
	}
	if limit := b.js.Conn().MaxPayload(); limit > 0 && int64(len(data)) > limit {
		return fmt.Errorf("localbroker: event %s: %d bytes: %w (%d)", ev.ID(), len(data), errTooLarge, limit)
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.publishTimeout)
	defer cancel()
	if _, err := b.js.Publish(ctx, b.subject, data); err != nil {
		return fmt.Errorf("localbroker: persist event %s: %w", ev.ID(), err)
	}
	return nil
}
