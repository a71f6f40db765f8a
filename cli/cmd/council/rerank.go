package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"

	"council.dev/events"
	"council.dev/shared/council"
)

// rerankCmd prints the ranking of a completed deliberation recomputed with
// another aggregation (GET /deliberations/{id}/ranking): no LLM call,
// nothing stored changes.
func rerankCmd(ctx context.Context, args []string, s streams) error {
	fl, o := queryFlags("rerank", "rerank -execute URL [flags] DELIBERATION_ID\n\n"+
		"Ranks a completed deliberation again from the critiques of its final review, with\n"+
		"-aggregation (GET {execute}/deliberations/{id}/ranking?aggregation=): no LLM call,\n"+
		"nothing stored changes.", s)
	agg := fl.String("aggregation", "", "mean, borda or confidence (default: the deliberation's own)")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one DELIBERATION_ID, got %d arguments", len(pos))
	}
	if a := council.Aggregation(*agg); a != "" && !a.Valid() {
		return usagef("-aggregation %q: want mean, borda or confidence", *agg)
	}
	path := "/deliberations/" + url.PathEscape(pos[0]) + "/ranking"
	if *agg != "" {
		path += "?aggregation=" + url.QueryEscape(*agg)
	}
	c, raw, _, err := getJSON(ctx, o, path, *o.timeout, events.DecodeRanking)
	if err != nil {
		return err
	}
	if *o.asJSON {
		_, err := s.out.Write(raw)
		return err
	}
	printRanking(s.out, &c)
	return nil
}

// printRanking prints a ranking with each proposal's score and the spread
// of its critiques' scores, the agreement and the winner.
func printRanking(w io.Writer, c *events.Completed) {
	fmt.Fprintf(w, "deliberation %s ranked by %s\n", c.DeliberationID, c.Aggregation)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RANK\tAGENT\tROLE\tSCORE\tSPREAD\tCRITIQUES")
	for _, r := range c.Ranking {
		score, spread := "-", "-"
		if r.Scored {
			score = fmt.Sprintf("%.3f", r.Score)
		}
		if r.ScoreSpread != nil {
			spread = fmt.Sprintf("%.2f", *r.ScoreSpread)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\n", r.Rank, r.Proposal.AgentID, r.Proposal.Role, score, spread, len(r.Critiques))
	}
	_ = tw.Flush()
	if c.Agreement != nil {
		fmt.Fprintf(w, "agreement (Kendall's W): %.3f\n", *c.Agreement)
	} else {
		fmt.Fprintln(w, "agreement: not measured (fewer than 2 reviewers ranked every other proposal)")
	}
	fmt.Fprintf(w, "winner: %s\n", c.Winner)
}
