package state

import "strings"

// where collects a query's conditions and their arguments; zero values
// add nothing, so filters read as one line per field.
type where struct {
	conds []string
	args  []any
}

// eq adds "column = ?" when v is not empty.
func (w *where) eq(column, v string) {
	if v != "" {
		w.add(column+" = ?", v)
	}
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

// sql is " WHERE a AND b", or "" without conditions.
func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}
