package localbroker

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	eventingduckv1 "knative.dev/eventing/pkg/apis/duck/v1"
)

// TestDeliveryFromSpec checks the backoff before each retry (the first
// retry is n = 0, as kncloudevents numbers it) and the timeout.
func TestDeliveryFromSpec(t *testing.T) {
	tests := []struct {
		name    string
		spec    *eventingduckv1.DeliverySpec
		retries int
		backoff []time.Duration
		timeout time.Duration
	}{
		{"none", nil, 0, []time.Duration{0, 0}, 0},
		{"exponential", spec(3, eventingduckv1.BackoffPolicyExponential, "", "PT10M"), 3,
			[]time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}, 10 * time.Minute},
		{"linear", spec(3, eventingduckv1.BackoffPolicyLinear, "", "PT1S"), 3,
			[]time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond}, time.Second},
		{"no delay", &eventingduckv1.DeliverySpec{Retry: ptr[int32](2), BackoffPolicy: ptr(eventingduckv1.BackoffPolicyLinear)}, 2,
			[]time.Duration{0, 0}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := deliveryFromSpec(tt.spec, "")
			if err != nil {
				t.Fatal(err)
			}
			var got []time.Duration
			for n := range tt.backoff {
				got = append(got, d.backoff(n))
			}
			if d.retries != tt.retries || d.timeout != tt.timeout {
				t.Errorf("retries %d, timeout %v; want %d, %v", d.retries, d.timeout, tt.retries, tt.timeout)
			}
			if diff := cmp.Diff(tt.backoff, got); diff != "" {
				t.Errorf("backoff (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDeliveryFromSpecRejects checks that a spec Knative could not parse is
// an error.
func TestDeliveryFromSpecRejects(t *testing.T) {
	for name, s := range map[string]*eventingduckv1.DeliverySpec{
		"bad delay":   {BackoffPolicy: ptr(eventingduckv1.BackoffPolicyLinear), BackoffDelay: ptr("1s")},
		"bad timeout": {Timeout: ptr("ten minutes")},
		"bad policy":  {BackoffPolicy: ptr[eventingduckv1.BackoffPolicyType]("random"), BackoffDelay: ptr("PT1S")},
		"negative":    {Retry: ptr[int32](-1)},
	} {
		if _, err := deliveryFromSpec(s, ""); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestShouldRetry pins kncloudevents' SelectiveRetry.
func TestShouldRetry(t *testing.T) {
	retried := map[int]bool{
		0: true, 400: false, 401: false, 403: false, 404: true, 408: true, 409: true, 410: false,
		422: false, 429: true, 300: false, 500: true, 502: true, 503: true, 504: true,
	}
	for code, want := range retried {
		if got := shouldRetry(code, nil); got != want {
			t.Errorf("status %d: retried %v; want %v", code, got, want)
		}
	}
	if !shouldRetry(0, errors.New("timeout")) {
		t.Error("transport error: not retried")
	}
	if isSuccess(http.StatusMultipleChoices) || !isSuccess(http.StatusNoContent) {
		t.Error("isSuccess: want 2xx only")
	}
}

// TestErrorExtensionsCutData checks knativeerrordata is cut to 1024
// characters and a missing response is recorded as 500.
func TestErrorExtensionsCutData(t *testing.T) {
	ext := errorExtensions("http://x/", 503, make([]byte, 4096), nil)
	if n := len(ext["knativeerrordata"].(string)); n != 1024 {
		t.Errorf("knativeerrordata of %d characters; want 1024", n)
	}
	ext = errorExtensions("http://x/", 0, nil, errors.New("deadline exceeded"))
	if ext["knativeerrorcode"] != http.StatusInternalServerError {
		t.Errorf("knativeerrorcode %v without a response; want 500", ext["knativeerrorcode"])
	}
}
