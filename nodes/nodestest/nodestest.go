// Package nodestest builds nodes from YAML the way flows do, for node
// unit tests.
package nodestest

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

// Envelope returns an envelope as the engine hands it to the step named
// step: its body, when asked for, is read from store within maxBody bytes,
// and results set on it are filed under step.
func Envelope(store *storage.Store, maxBody int64, step string) *nodes.Envelope {
	d := nodes.NewDelivery(store, maxBody)
	d.SetStep(step)
	return d.Envelope()
}

// New decodes with (the step's `with:` block, as YAML) against the node
// type's spec in the global registry and constructs the node. Config
// problems fail the test; use Build to inspect them.
func New(t *testing.T, typ, with string, deps nodes.Deps) nodes.Node {
	t.Helper()
	n, err := Build(typ, with, deps)
	require.NoError(t, err)
	return n
}

// Build is New returning the error instead.
func Build(typ, with string, deps nodes.Deps) (nodes.Node, error) {
	spec, ok := nodes.Global().Lookup(typ)
	if !ok {
		return nil, nodes.Problems{{Msg: "unknown node type " + typ}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(with), &doc); err != nil {
		return nil, err
	}
	var root *yaml.Node
	if len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	cfg, probs := nodes.Decode("test.yaml", typ, spec.Fields, root, nodes.Pos{File: "test.yaml", Line: 1, Col: 1})
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return spec.Construct(cfg, deps)
}

// Problems returns the configuration problems err holds, failing the test
// when it holds none.
func Problems(t *testing.T, err error) nodes.Problems {
	t.Helper()
	var ps nodes.Problems
	require.True(t, errors.As(err, &ps), "want configuration problems, got %v", err)
	return ps
}
