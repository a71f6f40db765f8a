package execute

import (
	_ "embed"
	"net/http"
)

// viewPage is the page of one deliberation (GET /deliberations/{id}/view):
// one self-contained HTML file, its style and script inline, no framework
// and no build step. It reads the deliberation from the event stream
// (GET /deliberations/{id}/events, an EventSource next to it), so it is live
// while the deliberation runs and whole once it ended.
//
//go:embed assets/view.html
var viewPage []byte

// serveView answers GET /deliberations/{id}/view with the page; the page
// finds the id in its own URL.
func (f *Function) serveView(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, _, err := f.store.Get(r.Context(), id); err != nil {
		serveNoDeliberationID(w, id, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Everything the page needs is inline or same-origin.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(viewPage)
}
