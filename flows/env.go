package flows

import (
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/nodes"
)

// envRef matches ${NAME} and ${NAME:-default}; $${...} is a literal ${...}.
var envRef = regexp.MustCompile(`\$?\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// interpolate replaces environment references in every scalar of the tree,
// in place. A reference to an unset variable without a default is a
// problem at the scalar's position.
func interpolate(file string, n *yaml.Node, lookup func(string) (string, bool), probs *nodes.Problems) {
	if n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			if strings.HasPrefix(m, "$$") {
				return m[1:]
			}
			sub := envRef.FindStringSubmatch(m)
			if v, ok := lookup(sub[1]); ok && v != "" {
				return v
			}
			if sub[2] != "" {
				return sub[3]
			}
			probs.Add(nodes.PosOf(file, n), "environment variable %s is not set (give a default with ${%s:-value})", sub[1], sub[1])
			return ""
		})
		if n.Style == 0 {
			// Re-resolve the scalar's type: "${PORT:-8080}" is an integer.
			var typed yaml.Node
			if yaml.Unmarshal([]byte(n.Value), &typed) == nil && len(typed.Content) == 1 && typed.Content[0].Kind == yaml.ScalarNode {
				n.Tag = typed.Content[0].Tag
			}
		}
	}
	for _, c := range n.Content {
		interpolate(file, c, lookup, probs)
	}
}

func osLookup(name string) (string, bool) { return os.LookupEnv(name) }
