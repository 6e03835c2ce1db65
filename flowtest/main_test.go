package flowtest_test

import (
	_ "github.com/sluicehq/sluice/nodes/all" // the node types flows use
)
