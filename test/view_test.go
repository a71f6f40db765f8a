package test

import (
	"context"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium is the path of the browser the page test drives: COUNCIL_CHROMIUM,
// else chromium (Debian's package, scripts/chromium.sh) on PATH. Missing, the
// test fails: it never skips.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("COUNCIL_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH (and COUNCIL_CHROMIUM unset): run scripts/chromium.sh install (make test does)")
	return ""
}

// artifacts is where tests keep what a person looks at afterwards
// (test/artifacts, ignored by git).
func artifacts(t *testing.T) string {
	t.Helper()
	dir := "artifacts"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDeliberationPageInChromium opens the page of a running deliberation
// in a real headless Chromium, waits for it to show the end, checks what
// it shows against the result (ranking rows, score matrix cells, timeline
// entries, tokens spent) and keeps a screenshot in test/artifacts.
func TestDeliberationPageInChromium(t *testing.T) {
	browser := chromium(t)
	s := startStack(t, false)
	srv := httptest.NewServer(s.Execute().QueryHandler())
	t.Cleanup(srv.Close)
	id := send(t, s, request(t, 48))
	accepted(t, srv.URL, id)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1600), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 5*time.Minute)
	defer cancelTimeout()

	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/deliberations/"+id+"/view"),
		chromedp.WaitReady(chromedp.CSS(`body[data-ended]`)),
	); err != nil {
		t.Fatalf("open the page in chromium: %v", err)
	}
	text := func(sel string) string {
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	count := func(sel string) int {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+"`"+sel+"`"+`).length`))
		if err != nil {
			t.Fatalf("count %s: %v", sel, err)
		}
		return n
	}
	statusText, spent, kendall, share := text(`#status`), text(`#tokens-spent`), text(`#kendall-w`), text(`#cached-share`)
	prefixShare := text(`#shared-prefix-share`)
	rows, timelineRows, lanes := count(`#ranking tbody tr.rank-row`), count(`#timeline tbody tr.timeline-row`), count(`#lanes .bar`)
	cells := count(`.score-cell[data-criterion]`)
	rankAgents, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`[...document.querySelectorAll("#ranking tbody tr.rank-row")].map(r => r.dataset.agent).join(",")`))
	if err != nil {
		t.Fatal(err)
	}
	cellText, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](
		`Object.fromEntries([...document.querySelectorAll('.score-cell[data-criterion="overall"]')].map(c => [c.dataset.reviewer + ">" + c.dataset.author, c.textContent]))`))
	if err != nil {
		t.Fatal(err)
	}
	queueWaits, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("#timeline tbody td.queue-wait")].map(c => c.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	progressEvents, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`body`), "data-progress-events"))
	if err != nil {
		t.Fatal(err)
	}
	// The agreement measures, on reviews where they are defined: four
	// reviewers that each scored the same three authors, two in the same
	// order and two reversed (W 0: no agreement), and a pair that agrees.
	agreement, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`(() => {
		const c = (r, a, o) => ({reviewer_id: r, author_id: a, overall: o});
		const mixed = [c("r1","x",.9), c("r1","y",.5), c("r1","z",.1), c("r2","x",.8), c("r2","y",.4), c("r2","z",.2),
			c("r3","x",.1), c("r3","y",.5), c("r3","z",.9), c("r4","x",.2), c("r4","y",.4), c("r4","z",.8)];
		const alike = [c("r1","x",.9), c("r1","y",.5), c("r2","x",.7), c("r2","y",.6), c("r2","z",.1)];
		const {kendallW, meanTau} = window.councilAgreement;
		return [kendallW(mixed).w, kendallW(mixed.slice(0, 6)).w, meanTau(alike).tau, meanTau(mixed).tau];
	})()`))
	if err != nil {
		t.Fatalf("agreement functions: %v", err)
	}
	// mixed: W 0; its first two reviewers alone: W 1; alike: tau 1; mixed:
	// of 6 pairs, 2 agree (tau 1) and 4 are reversed (tau -1): mean -1/3.
	if want := []float64{0, 1, 1, -1.0 / 3}; !slices.EqualFunc(agreement, want, func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }) {
		t.Errorf("agreement [W, W, tau, tau] = %v, want %v", agreement, want)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(artifacts(t), "deliberation-view.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: test/%s (%d bytes); %s progress events seen live", shot, len(png), progressEvents.Value)

	c := await(t, s, id)
	if statusText != "completed" {
		t.Errorf("status shown %q, want completed", statusText)
	}
	var want []string
	for _, r := range c.Ranking {
		want = append(want, r.Proposal.AgentID)
	}
	if rows != 3 || rankAgents != strings.Join(want, ",") {
		t.Errorf("ranking rows %d (%s), want 3 (%s)", rows, rankAgents, strings.Join(want, ","))
	}
	// 3 proposals, 3 critiques, 3 revisions, 6 final critiques (all pairs).
	if timelineRows != 15 || lanes != 15 {
		t.Errorf("timeline: %d rows, %d bars; want 15 LLM calls", timelineRows, lanes)
	}
	// Every call answered, each with the time its worker started it: a
	// queue wait in ms or s, never "—".
	waitShown := regexp.MustCompile(`^\d+(\.\d+)? m?s$`)
	if len(queueWaits) != 15 {
		t.Errorf("%d queue wait cells, want 15", len(queueWaits))
	}
	for i, w := range queueWaits {
		if !waitShown.MatchString(w) {
			t.Errorf("timeline row %d shows queue wait %q, want a time", i, w)
		}
	}
	// The final review by all pairs: each of 3 reviewers reviews the 2
	// others, scored on overall and the 4 criteria of the rubric.
	if cells != 6*5 {
		t.Errorf("%d score matrix cells, want 30 (6 critiques × overall and 4 criteria)", cells)
	}
	for _, r := range c.Ranking {
		for _, cr := range r.Critiques {
			k := cr.ReviewerID + ">" + cr.AuthorID
			if got, want := cellText[k], fmt.Sprintf("%.2f", cr.Overall); got != want {
				t.Errorf("matrix cell %s shows %q, want %s", k, got, want)
			}
		}
	}
	if !strings.Contains(spent, fmt.Sprint(c.Usage.TotalTokens)) || !strings.Contains(spent, fmt.Sprintf("cached %d", c.Usage.CachedTokens)) {
		t.Errorf("tokens spent shows %q, want total %d and cached %d", spent, c.Usage.TotalTokens, c.Usage.CachedTokens)
	}
	if c.Usage.PromptTokens > 0 {
		want := fmt.Sprintf("%d %%", int(math.Round(100*float64(c.Usage.CachedTokens)/float64(c.Usage.PromptTokens))))
		if !strings.Contains(share, want) {
			t.Errorf("prefix cache share shows %q, want %s", share, want)
		}
	}
	// The completed event's prompt_cache, as the page shows it.
	if want := fmt.Sprintf("%d %%", int(math.Round(100*c.PromptCache.SharedPrefixShare))); c.PromptCache.SharedPrefixShare <= 0 || !strings.Contains(prefixShare, want) {
		t.Errorf("shared prefix share shows %q, want %s (measured %v, above 0)", prefixShare, want, c.PromptCache.SharedPrefixShare)
	}
	if !strings.Contains(kendall, "Kendall") {
		t.Errorf("agreement shows %q, want what it says of Kendall's W", kendall)
	}
}
