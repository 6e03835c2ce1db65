// Package functions holds the helpers for function authors: a Python
// module, a Node.js module and a Go package (sluicefn, under go/). The
// exec runtime puts the Python and Node helpers on its workers' module
// paths (PYTHONPATH, NODE_PATH), so `import sluice_function` and
// `require('sluice-function')` work without copying them.
package functions

import "embed"

// SDK holds python/sluice_function.py and node/sluice-function.js.
//
//go:embed python/sluice_function.py node/sluice-function.js
var SDK embed.FS
