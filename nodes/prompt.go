package nodes

// Prompt is implemented by nodes that return promptly once their context
// ends: pure computation bounded by deadline-aware expressions, or I/O that
// takes the context. The engine calls them on the run's goroutine. Any
// other node is called on a goroutine of its own and, if it has not
// returned shortly after its step's deadline, abandoned: the step fails
// with a timeout and the call's result, when it comes, is discarded.
type Prompt interface {
	// Prompt is a marker; it is never called.
	Prompt()
}
