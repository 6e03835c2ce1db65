package image_test

import (
	"bytes"
	"image"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

func TestEncodeFormats(t *testing.T) {
	src := jpegOf(t, halves(64, 32, red, blue))
	for with, want := range map[string]string{
		`{format: png}`:                      "png",
		`{format: gif, gif_colors: 16}`:      "gif",
		`{format: source, quality: 40}`:      "jpeg",
		`{for_key: "thumbs/a.PNG"}`:          "png",
		`{for_key: "{{ 'x/' + 'b.jpeg' }}"}`: "jpeg",
	} {
		t.Run(with, func(t *testing.T) {
			env := envOf(src)
			require.NoError(t, nodestest.New(t, "image.encode", with, nodes.Deps{}).Process(t.Context(), env))
			body, err := env.Body(t.Context())
			require.NoError(t, err)
			_, format, err := image.DecodeConfig(bytes.NewReader(body))
			require.NoError(t, err)
			assert.Equal(t, want, format)
			assert.Equal(t, "image/"+want, env.BodyType())
		})
	}
	err := nodestest.New(t, "image.encode", `{for_key: "a.webp"}`, nodes.Deps{}).Process(t.Context(), envOf(src))
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorContains(t, err, `cannot tell an image format Sluice writes from ".webp"`)
	_, err = nodestest.Build("image.encode", `{format: png, for_key: a.png}`, nodes.Deps{})
	assert.Error(t, err)
}

func TestEncodeStripsMetadata(t *testing.T) {
	src := withOrientation(jpegOf(t, halves(64, 32, red, blue)), 1)
	require.Contains(t, string(src), "Exif")
	env := envOf(src)
	require.NoError(t, nodestest.New(t, "image.encode", `{}`, nodes.Deps{}).Process(t.Context(), env))
	body, err := env.Body(t.Context())
	require.NoError(t, err)
	assert.NotContains(t, string(body), "Exif")
	cfg, err := jpegConfig(body)
	require.NoError(t, err)
	assert.Equal(t, [2]int{64, 32}, [2]int{cfg.Width, cfg.Height})
}

func jpegConfig(b []byte) (image.Config, error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	return cfg, err
}

func TestInfo(t *testing.T) {
	src := withOrientation(jpegOf(t, halves(200, 100, red, blue)), 6)
	env := envOf(src)
	env.Payload = map[string]any{"id": 1}
	require.NoError(t, nodestest.New(t, "image.info", `{}`, nodes.Deps{}).Process(t.Context(), env))
	want := map[string]any{"format": "jpeg", "content_type": "image/jpeg", "width": 100, "height": 200, "orientation": 6, "bytes": len(src)}
	assert.Equal(t, want, env.Payload.(map[string]any)["image"])
	assert.Equal(t, want, env.Steps["thumb"])

	// After a thumbnail, info describes the thumbnail as it will be written.
	require.NoError(t, nodestest.New(t, "image.thumbnail", `{width: 50, height: 50}`, nodes.Deps{}).Process(t.Context(), env))
	require.NoError(t, nodestest.New(t, "image.info", `{into: thumb}`, nodes.Deps{}).Process(t.Context(), env))
	got := env.Payload.(map[string]any)["thumb"].(map[string]any)
	assert.Equal(t, []any{25, 50, 1}, []any{got["width"], got["height"], got["orientation"]})

	env = envOf([]byte("not an image"))
	err := nodestest.New(t, "image.info", `{}`, nodes.Deps{}).Process(t.Context(), env)
	assert.True(t, nodes.IsPermanent(err))
}
