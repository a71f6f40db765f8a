package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"strings"

	"council.dev/events"
)

// view prints the URL of a deliberation's page (GET
// {execute}/deliberations/{id}/view) once execute knows the id, and with
// -open opens it in the desktop's browser.
func view(ctx context.Context, args []string, s streams) error {
	fl, o := queryFlags("view", "view -execute URL [-open] DELIBERATION_ID\n\n"+
		"Prints the address of the deliberation's page on execute: its ranking, proposals, critique\n"+
		"score matrices, the agreement between reviewers, a timeline of every LLM call and the tokens\n"+
		"spent, live while it runs (GET {execute}/deliberations/{id}/view). -open opens it in the\n"+
		"browser (xdg-open, open). Exit 1 when execute does not know the id.", s)
	open := fl.Bool("open", false, "open the page in the browser")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one DELIBERATION_ID, got %d arguments", len(pos))
	}
	id := pos[0]
	d, _, code, err := getJSON(ctx, o, "/deliberations/"+url.PathEscape(id), *o.timeout,
		events.DecodeDeliberationView, http.StatusNotFound)
	if err != nil {
		return err
	}
	if code == http.StatusNotFound {
		return fmt.Errorf("execute knows no deliberation %s", id)
	}
	page := strings.TrimRight(*o.base, "/") + "/deliberations/" + url.PathEscape(id) + "/view"
	fmt.Fprintf(s.out, "%s\t%s\n", page, d.Status)
	if !*open {
		return nil
	}
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	if err := exec.CommandContext(ctx, name, page).Start(); err != nil {
		return fmt.Errorf("open %s with %s: %w (open the address above yourself)", page, name, err)
	}
	return nil
}
