package localbroker

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/rickb777/date/period"
	duckv1 "knative.dev/eventing/pkg/apis/duck/v1"
	"knative.dev/eventing/pkg/kncloudevents/attributes"
)

// delivery is a DeliverySpec as the dispatcher applies it.
type delivery struct {
	// retries is the number of attempts after the first.
	retries int
	// backoff is the wait before retry n+1 (n from 0), as retryablehttp
	// numbers them for kncloudevents' Backoff.
	backoff func(n int) time.Duration
	// timeout bounds one attempt; 0: none.
	timeout time.Duration
	// deadLetter is the dead-letter sink's URL; empty: none.
	deadLetter string
}

// deliveryFromSpec reads spec as knative.dev/eventing/pkg/kncloudevents
// RetryConfigFromDeliverySpec (Eventing v1.15.2, retries.go) does: retry is
// the number of retries after the first attempt; backoffDelay and timeout
// are ISO-8601 durations parsed with github.com/rickb777/date/period; the
// backoff before retry n (n = 0 for the first retry, as go-retryablehttp
// passes it) is delay×2^n when exponential and delay×n when linear, and 0
// when either the policy or the delay is unset. A nil spec means no
// retries. deadLetter is the resolved dead-letter sink ("" for none).
func deliveryFromSpec(spec *duckv1.DeliverySpec, deadLetter string) (delivery, error) {
	d := delivery{backoff: func(int) time.Duration { return 0 }, deadLetter: deadLetter}
	if spec == nil {
		return d, nil
	}
	if spec.Retry != nil {
		if *spec.Retry < 0 {
			return d, fmt.Errorf("delivery retry %d: want 0 or more", *spec.Retry)
		}
		d.retries = int(*spec.Retry)
	}
	if spec.BackoffPolicy != nil && spec.BackoffDelay != nil {
		delay, err := parsePeriod(*spec.BackoffDelay)
		if err != nil {
			return d, fmt.Errorf("delivery backoffDelay: %w", err)
		}
		switch *spec.BackoffPolicy {
		case duckv1.BackoffPolicyExponential:
			d.backoff = func(n int) time.Duration { return delay * time.Duration(math.Exp2(float64(n))) }
		case duckv1.BackoffPolicyLinear:
			d.backoff = func(n int) time.Duration { return delay * time.Duration(n) }
		default:
			return d, fmt.Errorf("delivery backoffPolicy %q: want %s or %s",
				*spec.BackoffPolicy, duckv1.BackoffPolicyExponential, duckv1.BackoffPolicyLinear)
		}
	}
	if spec.Timeout != nil {
		t, err := parsePeriod(*spec.Timeout)
		if err != nil {
			return d, fmt.Errorf("delivery timeout: %w", err)
		}
		d.timeout = t
	}
	return d, nil
}

// parsePeriod parses an ISO-8601 duration as Knative does.
func parsePeriod(s string) (time.Duration, error) {
	p, err := period.Parse(s)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	d, _ := p.Duration()
	if d < 0 {
		return 0, fmt.Errorf("%q: negative", s)
	}
	return d, nil
}

// shouldRetry says whether a failed attempt is retried. It follows
// knative.dev/eventing/pkg/kncloudevents SelectiveRetry (Eventing v1.15.2,
// retries.go) exactly: no response or a transport error (a timeout
// included), and the status codes 5xx, 404, 408, 409 and 429 are retried;
// every other code (400, 422, other 4xx, 3xx) is not.
func shouldRetry(code int, err error) bool {
	if err != nil || code == 0 {
		return true
	}
	return code >= 500 || code == http.StatusNotFound || code == http.StatusTooManyRequests ||
		code == http.StatusRequestTimeout || code == http.StatusConflict
}

// isSuccess is kncloudevents' notion of a delivered event: a 2xx answer.
func isSuccess(code int) bool { return code >= 200 && code < 300 }

// errorExtensions are the extensions a dead letter carries, as
// knative.dev/eventing/pkg/kncloudevents dispatchExecutionInfoTransformers
// and attributes.KnativeErrorTransformers (Eventing v1.15.2) write them:
// knativeerrordest, the subscriber's URL; knativeerrorcode, the status
// code of the last attempt (500 when there was no response, as
// executeRequest records a transport error); knativeerrordata, the
// response body (or "dispatch error: ..." without one) base64-encoded and
// cut to 1024 characters.
func errorExtensions(dest string, code int, body []byte, err error) map[string]any {
	if code == 0 || err != nil {
		code = http.StatusInternalServerError
		if err == nil {
			err = errors.New("no response")
		}
		body = []byte("dispatch error: " + err.Error())
	}
	data := base64.StdEncoding.EncodeToString(body)
	if len(data) > attributes.KnativeErrorDataExtensionMaxLength {
		data = data[:attributes.KnativeErrorDataExtensionMaxLength]
	}
	return map[string]any{
		attributes.KnativeErrorDestExtensionKey: dest,
		attributes.KnativeErrorCodeExtensionKey: code,
		attributes.KnativeErrorDataExtensionKey: data,
	}
}
