package events

import "council.dev/shared/council"

// The aggregation fields of a result on the wire: optional numbers, absent
// where the domain has nothing to say.

// agreementOf is Result.Agreement on the wire: absent when fewer than two
// complete rankings measured it.
func agreementOf(r council.Result) *float64 {
	if r.Raters < 2 {
		return nil
	}
	return finitePtr(&r.Agreement)
}

// spreadOf is Ranked.ScoreSpread on the wire: absent for an unscored
// proposal.
func spreadOf(r council.Ranked) *float64 {
	if len(r.Critiques) == 0 {
		return nil
	}
	return finitePtr(&r.ScoreSpread)
}

// finitePtr copies *v, made finite (finite), or returns nil for nil.
func finitePtr(v *float64) *float64 {
	if v == nil {
		return nil
	}
	f := finite(*v)
	return &f
}
