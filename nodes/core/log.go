package core

import (
	"context"
	"log/slog"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
)

const (
	logMessage = "message"
	logLevel   = "level"
	logFields  = "fields"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "log",
		Summary: "Write a structured log line (log/slog) with the flow, step and run attached.",
		Fields: []nodes.Field{
			{Name: logMessage, Kind: nodes.Template, Required: true, Doc: "The message; may use {{ }} expressions."},
			{Name: logLevel, Kind: nodes.Enum, Options: []string{"debug", "info", "warn", "error"}, Default: "info", Doc: "Log level."},
			{Name: logFields, Kind: nodes.Map, Elem: nodes.Expr, Doc: "Attributes: name → expression."},
		},
		Examples: []nodes.Example{{Title: "Log an order", YAML: "node: log\nwith:\n  message: 'order {{ payload.id }} is {{ payload.status }}'\n  fields:\n    total: payload.total"}},
		New:      newLog,
	})
}

type logNode struct {
	msg    *eval.Template
	level  slog.Level
	fields []nodes.MapEntry
	logger *slog.Logger
}

func newLog(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.String(logLevel)))
	logger := d.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &logNode{msg: c.Template(logMessage), level: level, fields: c.Map(logFields), logger: logger}, nil
}

func (l *logNode) Process(ctx context.Context, env *nodes.Envelope) error {
	vars := env.Vars()
	msg, err := l.msg.RenderContext(ctx, vars)
	if err != nil {
		return nodes.ExprError(err)
	}
	attrs := []slog.Attr{slog.String("run", env.Run)}
	for _, f := range l.fields {
		v, err := f.Value.(*eval.Program).EvalContext(ctx, vars)
		if err != nil {
			return nodes.ExprError(err)
		}
		attrs = append(attrs, slog.Any(f.Key, v))
	}
	l.logger.LogAttrs(ctx, l.level, msg, attrs...)
	return nil
}

var _ nodes.Node = (*logNode)(nil)
