package counciltest_test

import (
	"testing"
	"time"

	"council.dev/shared/counciltest"
)

func TestWithin(t *testing.T) {
	n := 0
	if !counciltest.Within(time.Second, time.Millisecond, func() bool { n++; return n == 3 }) || n != 3 {
		t.Errorf("Within of a condition true at the third check: n = %d", n)
	}
	start := time.Now()
	if counciltest.Within(20*time.Millisecond, 5*time.Millisecond, func() bool { return false }) {
		t.Error("Within of a condition never true reported true")
	}
	if took := time.Since(start); took < 20*time.Millisecond {
		t.Errorf("Within gave up after %s, before its 20ms", took)
	}
}
