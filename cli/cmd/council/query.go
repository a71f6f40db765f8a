package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"council.dev/events"
)

// The query commands read execute's HTTP queries (events/openapi.yaml) and
// decode them with the contract's decoders into its types (events/query.go).

const executeHint = "start execute (COUNCIL_NATS_URL=nats://127.0.0.1:4222 go run ./functions/execute/cmd/execute), " +
	"or port-forward one of its pods (kubectl -n council port-forward " +
	"$(kubectl -n council get pod -l serving.knative.dev/service=execute -o name | head -1) 8080:8080)"

// queryFlags are the flags every query command takes.
type queryOptions struct {
	base    *string
	asJSON  *bool
	timeout *time.Duration
	// token is the bearer token of execute's query routes
	// (COUNCIL_QUERY_TOKEN or the file COUNCIL_QUERY_TOKEN_FILE).
	token func() (string, error)
}

func queryFlags(command, synopsis string, s streams) (*flag.FlagSet, queryOptions) {
	fl := newFlags(command, synopsis, s)
	return fl, queryOptions{
		base:    fl.String("execute", envOr(s.getenv, "COUNCIL_EXECUTE_URL", ""), "execute's base URL (default $COUNCIL_EXECUTE_URL)"),
		asJSON:  fl.Bool("json", false, "print execute's JSON answer as it is"),
		timeout: fl.Duration("timeout", 30*time.Second, "how long to wait for the answer"),
		token:   func() (string, error) { return queryToken(s.getenv) },
	}
}

// queryToken is COUNCIL_QUERY_TOKEN, or the content of the file
// COUNCIL_QUERY_TOKEN_FILE; empty when neither is set.
func queryToken(getenv func(string) string) (string, error) {
	if v := strings.TrimSpace(getenv("COUNCIL_QUERY_TOKEN")); v != "" {
		return v, nil
	}
	f := strings.TrimSpace(getenv("COUNCIL_QUERY_TOKEN_FILE"))
	if f == "" {
		return "", nil
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return "", usagef("COUNCIL_QUERY_TOKEN_FILE=%q: %v", f, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func status(ctx context.Context, args []string, s streams) error {
	fl, o := queryFlags("status", "status -execute URL [flags] DELIBERATION_ID\n\n"+
		"Prints where one deliberation stands (GET {execute}/deliberations/{id}) and, once it\n"+
		"completed, its ranking. Exit 1 when execute does not know the id.", s)
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one DELIBERATION_ID, got %d arguments", len(pos))
	}
	d, raw, code, err := getJSON(ctx, o, "/deliberations/"+url.PathEscape(pos[0]), *o.timeout,
		events.DecodeDeliberationView, http.StatusNotFound)
	if err != nil {
		return err
	}
	if *o.asJSON {
		_, err := s.out.Write(raw)
		return err
	}
	if code == http.StatusNotFound {
		if d.Status != events.StatusNotFound {
			return fmt.Errorf("GET %s/deliberations/%s: 404 without execute's answer (is %s the execute function?)", *o.base, pos[0], *o.base)
		}
		return fmt.Errorf("execute at %s knows no deliberation %s", *o.base, pos[0])
	}
	printDeliberation(s.out, d)
	return nil
}

func printDeliberation(w io.Writer, d events.DeliberationView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("deliberation", d.DeliberationID)
	row("task", d.TaskID)
	row("kind", d.Kind)
	row("status", d.Status)
	row("backend", d.Backend)
	if d.StartedAt != nil {
		row("started", d.StartedAt.Format(time.RFC3339))
	}
	if d.FinishedAt != nil {
		row("finished", d.FinishedAt.Format(time.RFC3339))
	}
	row("duration", (time.Duration(d.DurationMS) * time.Millisecond).String())
	row("reason", d.Reason)
	if j := d.Job; j != nil {
		row("ray job", strings.TrimSpace(fmt.Sprintf("%s %s (attempt %d) %s", j.SubmissionID, j.State, j.Attempt, j.Message)))
	}
	if d.Phase != "" && d.Status == "running" {
		row("stage", fmt.Sprintf("%d, %s", d.Stage, d.Phase))
	}
	for _, a := range d.Agents {
		row("agent "+a.AgentID, fmt.Sprintf("%s %s: %d done, %d pending, %d failed", a.Role, a.State, a.Done, a.Pending, a.Failed))
	}
	_ = tw.Flush()
	if len(d.Result) == 0 {
		return
	}
	c, err := d.CompletedResult()
	if err != nil {
		fmt.Fprintf(w, "result: unreadable (%v)\n", err)
		return
	}
	printResult(w, &c, time.Duration(d.DurationMS)*time.Millisecond)
}

func find(ctx context.Context, args []string, s streams) error {
	fl, o := queryFlags("find", "find -execute URL [flags] TASK_ID\n\n"+
		"Lists the deliberations of a task, newest first (GET {execute}/deliberations?task_id=).", s)
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one TASK_ID, got %d arguments", len(pos))
	}
	list, raw, _, err := getJSON(ctx, o, "/deliberations?task_id="+url.QueryEscape(pos[0]), *o.timeout, events.DecodeDeliberationViews)
	if err != nil {
		return err
	}
	if *o.asJSON {
		_, err := s.out.Write(raw)
		return err
	}
	if len(list) == 0 {
		fmt.Fprintf(s.out, "no deliberations of task %s\n", pos[0])
		return nil
	}
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DELIBERATION\tSTATUS\tSTARTED\tDURATION\tSTAGE")
	for _, d := range list {
		started := ""
		if d.StartedAt != nil {
			started = d.StartedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d %s\n", d.DeliberationID, d.Status, started,
			time.Duration(d.DurationMS)*time.Millisecond, d.Stage, d.Phase)
	}
	return tw.Flush()
}

func jobs(ctx context.Context, args []string, s streams) error {
	fl, o := queryFlags("jobs", "jobs -execute URL [flags]\n\n"+
		"Lists the running deliberations, oldest first (GET {execute}/jobs).", s)
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("unexpected arguments %q", pos)
	}
	list, raw, _, err := getJSON(ctx, o, "/jobs", *o.timeout, events.DecodeActiveJobs)
	if err != nil {
		return err
	}
	if *o.asJSON {
		_, err := s.out.Write(raw)
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(s.out, "no running deliberations")
		return nil
	}
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DELIBERATION\tTASK\tROLE\tBACKEND\tSTATUS\tSTARTED\tRUNTIME\tRAY JOB")
	for _, j := range list {
		job := "-"
		if j.Job != nil {
			job = j.Job.SubmissionID + " " + j.Job.State
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.DeliberationID, j.TaskID, orDefault(j.Role, "-"),
			orDefault(j.Backend, "functions"), j.Status, j.StartedAt.Format(time.RFC3339), j.Runtime, job)
	}
	return tw.Flush()
}

func stats(ctx context.Context, args []string, s streams) error {
	fl, o := queryFlags("stats", "stats -execute URL [flags]\n\n"+
		"Prints execute's health checks and deliberation statistics (GET {execute}/status).\n"+
		"Exit 1 when execute reports itself unhealthy.", s)
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("unexpected arguments %q", pos)
	}
	st, raw, _, err := getJSON(ctx, o, "/status", *o.timeout, events.DecodeServiceStatus, http.StatusServiceUnavailable)
	if err != nil {
		return err
	}
	if *o.asJSON {
		if _, err := s.out.Write(raw); err != nil {
			return err
		}
	} else {
		printStats(s.out, *o.base, st)
	}
	if st.Status != events.ServiceHealthy {
		var failed []string
		for name, c := range st.Checks {
			if !c.OK {
				failed = append(failed, name+": "+c.Error)
			}
		}
		sort.Strings(failed)
		return fmt.Errorf("execute at %s is %s: %s", *o.base, st.Status, strings.Join(failed, "; "))
	}
	return nil
}

func printStats(w io.Writer, base string, st events.ServiceStatus) {
	fmt.Fprintf(w, "execute %s: %s, up %s\n", base, st.Status, time.Duration(st.UptimeSeconds)*time.Second)
	names := make([]string, 0, len(st.Checks))
	for name := range st.Checks {
		names = append(names, name)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tOK\tLATENCY\tERROR")
	for _, name := range names {
		c := st.Checks[name]
		ok := "yes"
		if !c.OK {
			ok = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%dms\t%s\n", name, ok, c.LatencyMS, orDefault(c.Error, "-"))
	}
	_ = tw.Flush()
	if st.Stats == nil {
		fmt.Fprintln(w, "deliberations: unknown (the state could not be read)")
		return
	}
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	fmt.Fprintf(w, "deliberations: %d total · %d active · %d completed · %d failed\n",
		st.Stats.Total, st.Stats.Active, st.Stats.Completed, st.Stats.Failed)
	fmt.Fprintf(w, "time (ended ones): average %s · p50 %s · p95 %s\n", ms(st.Stats.AverageMS), ms(st.Stats.P50MS), ms(st.Stats.P95MS))
}

// getJSON GETs base+path and decodes the JSON answer with decode (one of
// the events decoders). Besides 200, it accepts the statuses in also (whose
// body is also the answer). It returns the answer, the raw body and the
// status; any other status is an error saying what execute replied
// (events.DecodeErrorReply).
func getJSON[T any](ctx context.Context, o queryOptions, path string, timeout time.Duration,
	decode func([]byte) (T, error), also ...int) (T, []byte, int, error) {
	var zero T
	base := *o.base
	token, err := o.token()
	if err != nil {
		return zero, nil, 0, err
	}
	if base == "" {
		return zero, nil, 0, usagef("-execute URL is required (or set COUNCIL_EXECUTE_URL)")
	}
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return zero, nil, 0, usagef("-execute %q: want an http(s) URL", base)
	}
	target := strings.TrimRight(base, "/") + path
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return zero, nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return zero, nil, 0, unreachable("execute", base, err, executeHint)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return zero, nil, 0, fmt.Errorf("read the answer of %s: %w", target, err)
	}
	ok := resp.StatusCode == http.StatusOK
	for _, c := range also {
		ok = ok || resp.StatusCode == c
	}
	var decodeErr error
	if ok {
		v, err := decode(raw)
		if err == nil {
			return v, raw, resp.StatusCode, nil
		}
		decodeErr = err
	}
	msg := strings.TrimSpace(string(raw))
	if e, err := events.DecodeErrorReply(raw); err == nil {
		msg = e.Error
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if decodeErr != nil || resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
		msg += " (is " + base + " the execute function? it answers /deliberations/{id}, /jobs and /status in JSON)"
	}
	return zero, raw, resp.StatusCode, fmt.Errorf("GET %s: %s: %s", target, resp.Status, msg)
}
