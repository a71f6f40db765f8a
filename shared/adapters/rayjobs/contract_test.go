package rayjobs_test

import (
	"testing"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// TestJobRunnerContract runs the JobRunner contract (the in-memory fake
// passes the same suite) against the real Ray head.
func TestJobRunnerContract(t *testing.T) {
	counciltest.TestJobRunner(t, counciltest.JobRunnerContract{
		New: func(t *testing.T) council.JobRunner { return newClient(t) },
		LongJob: func(t *testing.T, name string) council.JobSpec {
			return council.JobSpec{
				SubmissionID: uniqueID(t, name),
				Entrypoint:   `python -c "import time; time.sleep(600)"`,
			}
		},
		Within: jobDeadline,
	})
}
