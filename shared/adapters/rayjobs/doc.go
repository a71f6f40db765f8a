// Package rayjobs runs council jobs on a Ray cluster through Ray's Jobs REST
// API, the HTTP API the Ray dashboard serves (port 8265 by default). [Client]
// is a council.JobRunner: it submits a job ([Client.Submit]), reads its state
// ([Client.Get], [Client.List]) and output ([Client.Logs]), stops it
// ([Client.Stop]) and forgets it ([Client.Delete]).
//
// A job's submission id is its identity. Submit is idempotent on it: Ray
// refuses a second job with an existing submission id, and Submit answers
// that refusal with the existing job instead of an error.
//
// A job's runtime environment is the one given with [WithRuntimeEnv], with
// JobSpec.Env merged into its env_vars and JobSpec.WorkingDir as its
// working_dir. Ray's REST API takes only URIs for working_dir (gcs://,
// https://, s3://, file:///path/on/the/cluster.zip, ...); a local directory is
// zipped and uploaded to the cluster first, as Ray's own SDK does.
//
// Errors wrap the council sentinels: council.ErrInvalid for a request Ray
// rejects (4xx, or a missing entrypoint or submission id), council.ErrNotFound
// for an unknown submission id, council.ErrConflict for deleting a job that
// still runs, council.ErrUnavailable when the cluster cannot be reached or
// answers 5xx. Each error carries Ray's own message.
package rayjobs
