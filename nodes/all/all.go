// Package all registers every built-in node type; import it for its side
// effect.
package all

import (
	_ "github.com/sluicehq/sluice/nodes/ai"           // ai.onnx, ai.ocr
	_ "github.com/sluicehq/sluice/nodes/archive"      // archive
	_ "github.com/sluicehq/sluice/nodes/core"         // publish, switch, transform, log
	_ "github.com/sluicehq/sluice/nodes/db"           // db.insert, db.query
	_ "github.com/sluicehq/sluice/nodes/function"     // function
	_ "github.com/sluicehq/sluice/nodes/httpcall"     // http.call
	_ "github.com/sluicehq/sluice/nodes/image"        // image.*
	_ "github.com/sluicehq/sluice/nodes/objects"      // storage.get, put, copy, delete, list, presign
	_ "github.com/sluicehq/sluice/nodes/statemachine" // state.transition
)
