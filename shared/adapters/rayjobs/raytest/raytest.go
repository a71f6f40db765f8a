// Package raytest hands tests the address of a real Ray head, the one
// scripts/ray.sh starts. A test that needs Ray fails without one; it never
// skips.
package raytest

import (
	"os"
	"strings"
	"testing"
)

// EnvAddress names the variable that holds the Ray dashboard URL.
const EnvAddress = "COUNCIL_RAY_ADDRESS"

// Address returns the Ray dashboard URL from COUNCIL_RAY_ADDRESS, and fails
// the test when it is unset.
func Address(t testing.TB) string {
	t.Helper()
	addr := strings.TrimSpace(os.Getenv(EnvAddress))
	if addr == "" {
		t.Fatal("no Ray head: " + EnvAddress + " is unset; start Ray: scripts/ray.sh start; export " +
			EnvAddress + "=http://127.0.0.1:8265")
	}
	return addr
}
