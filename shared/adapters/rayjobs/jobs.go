package rayjobs

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"council.dev/shared/council"
)

// submitRequest is Ray's JobSubmitRequest (ray/dashboard/modules/job/common.py).
type submitRequest struct {
	Entrypoint   string             `json:"entrypoint"`
	SubmissionID string             `json:"submission_id"`
	RuntimeEnv   map[string]any     `json:"runtime_env,omitempty"`
	Metadata     map[string]string  `json:"metadata,omitempty"`
	NumCPUs      float64            `json:"entrypoint_num_cpus,omitempty"`
	NumGPUs      float64            `json:"entrypoint_num_gpus,omitempty"`
	Resources    map[string]float64 `json:"entrypoint_resources,omitempty"`
}

// jobDetails is the part of Ray's JobDetails
// (ray/dashboard/modules/job/pydantic_models.py) that council reads. Null
// fields decode to zero values.
type jobDetails struct {
	Type         string            `json:"type"` // SUBMISSION or DRIVER
	JobID        string            `json:"job_id"`
	SubmissionID string            `json:"submission_id"`
	Status       string            `json:"status"`
	Entrypoint   string            `json:"entrypoint"`
	Message      string            `json:"message"`
	StartTime    int64             `json:"start_time"` // ms since the epoch, 0 when unknown
	EndTime      int64             `json:"end_time"`   // ms since the epoch, 0 while running
	Metadata     map[string]string `json:"metadata"`
	RuntimeEnv   map[string]any    `json:"runtime_env"`
}

func (d jobDetails) info() council.JobInfo {
	wd, _ := d.RuntimeEnv["working_dir"].(string)
	return council.JobInfo{
		SubmissionID: d.SubmissionID,
		JobID:        d.JobID,
		State:        council.JobState(d.Status),
		Message:      d.Message,
		Entrypoint:   d.Entrypoint,
		Metadata:     d.Metadata,
		StartTime:    msTime(d.StartTime),
		EndTime:      msTime(d.EndTime),
		WorkingDir:   wd,
	}
}

func msTime(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// Version is what a cluster says about itself.
type Version struct {
	// API is the version of the Jobs API ("4" for recent Ray 2.x).
	API string
	// Ray is the Ray release, e.g. "2.60.0".
	Ray string
	// Commit is the Ray commit the release was built from.
	Commit string
	// Session names the cluster's current session; it changes on restart.
	Session string
}

// Submit starts a job on the cluster and returns what the cluster says about
// it. Submitting a submission id that exists returns that job, whatever its
// state, and starts nothing. A local JobSpec.WorkingDir is uploaded first.
//
// Errors wrap council.ErrInvalid for a spec without entrypoint or
// submission id, an unusable working directory or a request Ray rejects, and
// council.ErrUnavailable when the cluster cannot be reached or fails.
func (c *Client) Submit(ctx context.Context, spec council.JobSpec) (council.JobInfo, error) {
	if err := checkID(spec.SubmissionID); err != nil {
		return council.JobInfo{}, fmt.Errorf("rayjobs: submit: %w", err)
	}
	if strings.TrimSpace(spec.Entrypoint) == "" {
		return council.JobInfo{}, fmt.Errorf("rayjobs: submit %s: %w",
			spec.SubmissionID, council.Invalidf("empty entrypoint"))
	}
	env, err := c.runtimeEnvFor(ctx, spec)
	if err != nil {
		return council.JobInfo{}, fmt.Errorf("rayjobs: submit %s: %w", spec.SubmissionID, err)
	}
	req := submitRequest{
		Entrypoint:   spec.Entrypoint,
		SubmissionID: spec.SubmissionID,
		RuntimeEnv:   env,
		Metadata:     spec.Metadata,
		NumCPUs:      c.numCPUs,
		NumGPUs:      c.numGPUs,
		Resources:    c.resources,
	}
	var resp struct {
		SubmissionID string `json:"submission_id"`
	}
	err = c.do(ctx, "POST", "/api/jobs/", req, &resp)
	switch {
	case err == nil:
	case isConflict(err):
		// Ray refuses a second job with this submission id: the first
		// submission reached the cluster, and it is the answer.
		info, gerr := c.get(ctx, spec.SubmissionID)
		if gerr != nil {
			return council.JobInfo{}, fmt.Errorf("rayjobs: submit %s: exists, but: %w", spec.SubmissionID, gerr)
		}
		c.logger.DebugContext(ctx, "ray job exists", "submission_id", spec.SubmissionID,
			"state", string(info.State))
		return info, nil
	default:
		return council.JobInfo{}, fmt.Errorf("rayjobs: submit %s: %w", spec.SubmissionID, err)
	}
	info, err := c.get(ctx, spec.SubmissionID)
	if err != nil {
		return council.JobInfo{}, fmt.Errorf("rayjobs: submit %s: submitted, but: %w", spec.SubmissionID, err)
	}
	return info, nil
}

// runtimeEnvFor merges the client's runtime environment with the spec's.
func (c *Client) runtimeEnvFor(ctx context.Context, spec council.JobSpec) (map[string]any, error) {
	env := maps.Clone(c.runtimeEnv)
	if env == nil {
		env = map[string]any{}
	}
	if len(c.baseEnv) > 0 || len(spec.Env) > 0 {
		vars := maps.Clone(c.baseEnv)
		if vars == nil {
			vars = make(map[string]string, len(spec.Env))
		}
		maps.Copy(vars, spec.Env)
		env["env_vars"] = vars
	}
	if spec.WorkingDir != "" {
		uri, err := c.workingDirURI(ctx, spec.WorkingDir)
		if err != nil {
			return nil, err
		}
		env["working_dir"] = uri
	}
	if len(env) == 0 {
		return nil, nil
	}
	return env, nil
}

// Get returns what the cluster says about the job with this submission id
// (a Ray job id such as "02000000" is accepted too). Errors wrap
// council.ErrNotFound for an unknown id and council.ErrUnavailable when the
// cluster cannot be reached.
func (c *Client) Get(ctx context.Context, submissionID string) (council.JobInfo, error) {
	info, err := c.get(ctx, submissionID)
	if err != nil {
		return council.JobInfo{}, fmt.Errorf("rayjobs: get %s: %w", submissionID, err)
	}
	return info, nil
}

func (c *Client) get(ctx context.Context, id string) (council.JobInfo, error) {
	if err := checkID(id); err != nil {
		return council.JobInfo{}, err
	}
	var d jobDetails
	if err := c.do(ctx, "GET", jobPath(id, ""), nil, &d); err != nil {
		return council.JobInfo{}, err
	}
	return d.info(), nil
}

// List returns the jobs submitted to the cluster through the Jobs API, in
// Ray's order; Ray drivers started otherwise (ray.init from a script) are
// left out. Errors wrap council.ErrUnavailable.
func (c *Client) List(ctx context.Context) ([]council.JobInfo, error) {
	var ds []jobDetails
	if err := c.do(ctx, "GET", "/api/jobs/", nil, &ds); err != nil {
		return nil, fmt.Errorf("rayjobs: list: %w", err)
	}
	out := make([]council.JobInfo, 0, len(ds))
	for _, d := range ds {
		if d.SubmissionID == "" {
			continue
		}
		out = append(out, d.info())
	}
	return out, nil
}

// Logs returns everything the job's entrypoint has written so far (stdout
// and stderr), up to 64 MiB. Errors wrap council.ErrNotFound for an unknown
// id and council.ErrUnavailable.
func (c *Client) Logs(ctx context.Context, submissionID string) (string, error) {
	if err := checkID(submissionID); err != nil {
		return "", fmt.Errorf("rayjobs: logs: %w", err)
	}
	var resp struct {
		Logs string `json:"logs"`
	}
	if err := c.do(ctx, "GET", jobPath(submissionID, "/logs"), nil, &resp); err != nil {
		return "", fmt.Errorf("rayjobs: logs %s: %w", submissionID, err)
	}
	return resp.Logs, nil
}

// Stop asks the cluster to stop the job; it returns once Ray has taken the
// request, before the job reaches STOPPED. Stopping a job that has already
// ended is not an error. Errors wrap council.ErrNotFound for an unknown id
// and council.ErrUnavailable.
func (c *Client) Stop(ctx context.Context, submissionID string) error {
	if err := checkID(submissionID); err != nil {
		return fmt.Errorf("rayjobs: stop: %w", err)
	}
	var resp struct {
		Stopped bool `json:"stopped"`
	}
	if err := c.do(ctx, "POST", jobPath(submissionID, "/stop"), nil, &resp); err != nil {
		return fmt.Errorf("rayjobs: stop %s: %w", submissionID, err)
	}
	c.logger.DebugContext(ctx, "ray job stop", "submission_id", submissionID, "stopped", resp.Stopped)
	return nil
}

// Delete removes an ended job and its record from the cluster; its
// submission id can then be used again. Errors wrap council.ErrNotFound for
// an unknown id, council.ErrConflict for a job that has not ended (stop it
// and wait first) and council.ErrUnavailable.
//
// Delete a job a few seconds after it ended, not at once: Ray (2.60 at
// least) watches a job's supervisor for about a second after the job ends,
// and when the record is gone by then it writes a new one, FAILED with "Job
// supervisor actor died" and entrypoint "Entrypoint not found.", which then
// holds the submission id.
func (c *Client) Delete(ctx context.Context, submissionID string) error {
	if err := checkID(submissionID); err != nil {
		return fmt.Errorf("rayjobs: delete: %w", err)
	}
	if err := c.do(ctx, "DELETE", jobPath(submissionID, ""), nil, nil); err != nil {
		return fmt.Errorf("rayjobs: delete %s: %w", submissionID, err)
	}
	return nil
}

// Version asks the cluster for its versions; it is also the cheapest way to
// see that the Jobs API answers. Errors wrap council.ErrUnavailable.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var resp struct {
		Version     string `json:"version"`
		RayVersion  string `json:"ray_version"`
		RayCommit   string `json:"ray_commit"`
		SessionName string `json:"session_name"`
	}
	if err := c.do(ctx, "GET", "/api/version", nil, &resp); err != nil {
		return Version{}, fmt.Errorf("rayjobs: version: %w", err)
	}
	return Version{API: resp.Version, Ray: resp.RayVersion, Commit: resp.RayCommit, Session: resp.SessionName}, nil
}
