//go:build !cgo || purego

package turbojpeg

import "image"

// Available reports whether libjpeg-turbo is built in.
const Available = false

// Decode always fails with ErrUnavailable in this build.
func Decode(body []byte, minW, minH int) (*image.NRGBA, error) { return nil, ErrUnavailable }

// Encode always fails with ErrUnavailable in this build.
func Encode(img *image.NRGBA, quality int) ([]byte, error) { return nil, ErrUnavailable }

// ScaledSize is the size Decode would give: the full size, without
// libjpeg-turbo.
func ScaledSize(w, h, _, _ int) (int, int) { return w, h }
