package counciltest_test

import (
	"testing"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

func TestMemoryStoreContract(t *testing.T) {
	counciltest.TestStore(t, func(*testing.T) council.Store { return counciltest.NewStore() })
}
