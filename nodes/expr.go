package nodes

import (
	"errors"

	"github.com/sluicehq/sluice/eval"
)

// ExprError classifies the error of an expression or template evaluated
// for a step: stopped because the step's context ended, it stays as it is
// (the engine judges its deadline); anything else (a missing field, a
// type error, the memory budget spent) is permanent, as the same input
// fails the same way again.
func ExprError(err error) error {
	if err == nil || errors.Is(err, eval.ErrStopped) {
		return err
	}
	return Permanent(err)
}
