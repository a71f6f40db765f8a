package execute

import (
	"errors"
	"net/http"

	"council.dev/events"
	"council.dev/shared/council"
)

// RouteRanking recomputes the ranking of a completed deliberation from its
// stored critiques, with the aggregation of the query parameter
// aggregation (mean, borda or confidence; absent: the deliberation's own),
// without any LLM call and without changing what is stored.
const RouteRanking = "GET /deliberations/{id}/ranking"

// serveRanking answers RouteRanking: 200 and the deliberation.completed.v1
// data ranked again (council.Rerank); 400 for an unknown aggregation, 404
// for an unknown deliberation, 409 for one that has not completed.
func (f *Function) serveRanking(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	agg := council.Aggregation(r.URL.Query().Get("aggregation"))
	if agg != "" && !agg.Valid() {
		writeJSON(w, http.StatusBadRequest, events.ErrorReply{
			Error: "aggregation " + string(agg) + " is unknown (want mean, borda or confidence)"})
		return
	}
	d, _, err := f.store.Get(r.Context(), id)
	switch {
	case errors.Is(err, council.ErrNotFound), errors.Is(err, council.ErrInvalid):
		writeJSON(w, http.StatusNotFound, Deliberation{DeliberationID: id, Status: StatusNotFound})
		return
	case err != nil:
		writeQueryError(w, err)
		return
	}
	if agg == "" {
		agg = d.Task.Constraints.Aggregation
	}
	if agg == "" {
		agg = council.AggregationMean // stored before aggregations
	}
	res, err := council.Rerank(d, agg)
	switch {
	case errors.Is(err, council.ErrConflict):
		writeJSON(w, http.StatusConflict, events.ErrorReply{Error: err.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusBadRequest, events.ErrorReply{Error: err.Error()})
		return
	}
	d = d.Clone()
	d.Result = &res
	writeJSON(w, http.StatusOK, events.CompletedOf(d))
}
