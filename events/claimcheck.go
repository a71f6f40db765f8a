package events

import (
	"net/url"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/shared/council"
)

// Claim check: an event whose data is larger than the broker takes goes
// without its data, with the CloudEvents dataref extension naming where the
// data is: an object of a NATS JetStream object store,
// "nats-object://<bucket>/<object>" (ADR 8). A receiver fetches the object
// and restores the data before decoding (natsjs.Consumer does it for the
// functions; other consumers do the same or read dataref themselves).
const (
	// ExtensionDataRef is the CloudEvents dataref extension attribute.
	ExtensionDataRef = "dataref"
	dataRefScheme    = "nats-object"
)

// DataRef returns the dataref of an object of bucket.
func DataRef(bucket, object string) string {
	return (&url.URL{Scheme: dataRefScheme, Host: bucket, Path: "/" + object}).String()
}

// ParseDataRef returns the bucket and object a dataref names. Its error
// wraps council.ErrInvalid.
func ParseDataRef(ref string) (bucket, object string, err error) {
	u, err := url.Parse(ref)
	if err != nil || u.Scheme != dataRefScheme || u.Host == "" || len(u.Path) < 2 {
		return "", "", council.Invalidf("dataref %q: want %s://<bucket>/<object>", ref, dataRefScheme)
	}
	return u.Host, strings.TrimPrefix(u.Path, "/"), nil
}

// Offload returns ev without its data and with dataref set to ref.
func Offload(ev event.Event, ref string) event.Event {
	out := ev.Clone()
	out.DataEncoded = nil
	out.SetExtension(ExtensionDataRef, ref)
	return out
}

// OffloadedRef returns the dataref of an event sent without its data, and
// whether it was.
func OffloadedRef(ev event.Event) (string, bool) {
	v, ok := ev.Extensions()[ExtensionDataRef]
	if !ok || len(ev.Data()) > 0 {
		return "", false
	}
	s, ok := v.(string)
	return s, ok && s != ""
}

// Restore returns ev with data put back (JSON) and dataref removed.
func Restore(ev event.Event, data []byte) event.Event {
	out := ev.Clone()
	out.DataEncoded = append([]byte(nil), data...)
	out.DataBase64 = false
	out.SetExtension(ExtensionDataRef, nil) // nil removes it
	return out
}
