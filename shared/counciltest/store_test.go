package counciltest_test

import (
	"testing"
	"time"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

func TestMemoryStoreContract(t *testing.T) {
	counciltest.TestStore(t, func(*testing.T) counciltest.StoreUnderTest {
		s := counciltest.NewStore()
		return counciltest.StoreUnderTest{Store: s, Corrupt: func(_ *testing.T, id string) { s.Corrupt(id) }}
	})
}

func TestFakeCompleterContract(t *testing.T) {
	counciltest.TestCompleter(t, counciltest.CompleterContract{
		New:   func(*testing.T) council.Completer { return &counciltest.Completer{Models: []string{"fake"}} },
		Model: "fake", Disallowed: "not-served",
	})
}

func TestFakeJobRunnerContract(t *testing.T) {
	counciltest.TestJobRunner(t, counciltest.JobRunnerContract{
		New: func(*testing.T) council.JobRunner { return &counciltest.JobRunner{} },
		LongJob: func(_ *testing.T, name string) council.JobSpec {
			return council.JobSpec{SubmissionID: "fake-" + name, Entrypoint: "sleep 600"}
		},
		Within: time.Second,
	})
}
