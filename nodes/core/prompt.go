package core

import "github.com/sluicehq/sluice/nodes"

// These nodes only compute on the envelope (expressions stop at their
// deadline): the engine calls them on the run's goroutine.
var (
	_ nodes.Prompt = (*transform)(nil)
	_ nodes.Prompt = (*switchNode)(nil)
	_ nodes.Prompt = (*publish)(nil)
	_ nodes.Prompt = (*respond)(nil)
	_ nodes.Prompt = (*logNode)(nil)
)

func (*transform) Prompt()  {}
func (*switchNode) Prompt() {}
func (*publish) Prompt()    {}
func (*respond) Prompt()    {}
func (*logNode) Prompt()    {}
