package flows

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// WatermillLogger adapts slog for Watermill. Unlike watermill's own slog
// adapter it checks whether a level is enabled before building attributes:
// the router logs twice per message at trace level, and building those
// attributes was a measurable share of the engine's per-message cost.
// Watermill's Info lines (start, stop, subscribe) are logged at Debug.
func WatermillLogger(l *slog.Logger) watermill.LoggerAdapter { return wmLogger{l} }

type wmLogger struct{ l *slog.Logger }

func (w wmLogger) log(level slog.Level, msg string, fields watermill.LogFields, extra ...any) {
	ctx := context.Background()
	if !w.l.Enabled(ctx, level) {
		return
	}
	args := make([]any, 0, 2*len(fields)+len(extra))
	for k, v := range fields {
		args = append(args, k, v)
	}
	w.l.Log(ctx, level, msg, append(args, extra...)...)
}

func (w wmLogger) Error(msg string, err error, fields watermill.LogFields) {
	w.log(slog.LevelError, msg, fields, "error", err)
}
func (w wmLogger) Info(msg string, fields watermill.LogFields)  { w.log(slog.LevelDebug, msg, fields) }
func (w wmLogger) Debug(msg string, fields watermill.LogFields) { w.log(slog.LevelDebug, msg, fields) }
func (w wmLogger) Trace(msg string, fields watermill.LogFields) {
	w.log(watermill.LevelTrace, msg, fields)
}

func (w wmLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	args := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		args = append(args, k, v)
	}
	return wmLogger{w.l.With(args...)}
}

var _ watermill.LoggerAdapter = wmLogger{}
