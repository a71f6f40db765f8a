package telemetry

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"council.dev/shared/council"
)

// Store wraps s: each operation is a client span "store <operation>", and
// CountEnd — called once per deliberation when its end is sent — counts the
// deliberation by outcome with its duration. ByTask (natsjs.Store) stays
// reachable.
func (t *Telemetry) Store(s council.Store) council.Store {
	if t == nil || s == nil {
		return s
	}
	return &store{next: s, t: t}
}

type store struct {
	next council.Store
	t    *Telemetry
}

var dbSystem = semconv.DBSystemNameKey.String("nats.jetstream.kv")

func (s *store) start(ctx context.Context, op, id string) (context.Context, trace.Span) {
	ctx, span := s.t.start(ctx, "store "+op, trace.SpanKindClient)
	if span.IsRecording() {
		span.SetAttributes(dbSystem, semconv.DBOperationName(op))
		if id != "" {
			span.SetAttributes(attribute.String("council.deliberation.id", id))
		}
	}
	return ctx, span
}

func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		if !errors.Is(err, council.ErrNotFound) && !errors.Is(err, council.ErrConflict) {
			span.SetStatus(codes.Error, err.Error())
		}
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
	}
	span.End()
}

func (s *store) Get(ctx context.Context, id string) (*council.Deliberation, uint64, error) {
	ctx, span := s.start(ctx, "get", id)
	d, rev, err := s.next.Get(ctx, id)
	end(span, err)
	return d, rev, err
}

func (s *store) Create(ctx context.Context, d *council.Deliberation) (uint64, error) {
	ctx, span := s.start(ctx, "create", d.ID)
	rev, err := s.next.Create(ctx, d)
	end(span, err)
	return rev, err
}

func (s *store) Update(ctx context.Context, d *council.Deliberation, revision uint64) (uint64, error) {
	ctx, span := s.start(ctx, "update", d.ID)
	if span.IsRecording() {
		span.SetAttributes(attribute.Int64("council.store.revision", int64(revision)), attribute.String("council.deliberation.status", string(d.Status)))
	}
	rev, err := s.next.Update(ctx, d, revision)
	end(span, err)
	return rev, err
}

func (s *store) List(ctx context.Context) ([]*council.Deliberation, error) {
	ctx, span := s.start(ctx, "list", "")
	ds, err := s.next.List(ctx)
	end(span, err)
	return ds, err
}

func (s *store) Active(ctx context.Context) ([]*council.Deliberation, error) {
	ctx, span := s.start(ctx, "active", "")
	ds, err := s.next.Active(ctx)
	end(span, err)
	return ds, err
}

func (s *store) Quarantined(ctx context.Context) ([]council.Quarantined, error) {
	ctx, span := s.start(ctx, "quarantined", "")
	q, err := s.next.Quarantined(ctx)
	end(span, err)
	return q, err
}

func (s *store) CountEnd(ctx context.Context, d *council.Deliberation) error {
	ctx, span := s.start(ctx, "count_end", d.ID)
	err := s.next.CountEnd(ctx, d)
	end(span, err)
	if err == nil {
		var took = s.t.now().Sub(d.StartedAt)
		if d.StartedAt.IsZero() {
			took = 0
		}
		s.t.DeliberationEnded(ctx, string(d.Status), took)
	}
	return err
}

func (s *store) Tally(ctx context.Context) (council.Tally, error) {
	ctx, span := s.start(ctx, "tally", "")
	tl, err := s.next.Tally(ctx)
	end(span, err)
	return tl, err
}

// ByTask lists the deliberations of a task when the wrapped store indexes
// them (natsjs.Store.ByTask).
func (s *store) ByTask(ctx context.Context, taskID string) ([]string, error) {
	tf, ok := s.next.(interface {
		ByTask(ctx context.Context, taskID string) ([]string, error)
	})
	if !ok {
		return nil, council.Invalidf("telemetry: the store does not index deliberations by task id")
	}
	ctx, span := s.start(ctx, "by_task", "")
	ids, err := tf.ByTask(ctx, taskID)
	end(span, err)
	return ids, err
}
