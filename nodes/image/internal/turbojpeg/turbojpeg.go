// Package turbojpeg decodes JPEGs scaled in the DCT domain and encodes
// them with libjpeg-turbo's TurboJPEG API (cgo). Decoding a 12 MP photo at
// 1/8 scale costs a fraction of a full decode, which is what makes
// thumbnails fast. Built without cgo, or with the purego tag, every call
// returns ErrUnavailable and callers use the pure-Go codecs.
package turbojpeg

import "errors"

// ErrUnavailable is returned by every function when the package was built
// without libjpeg-turbo (no cgo, or the purego build tag).
var ErrUnavailable = errors.New("libjpeg-turbo not built in")

// ErrUnsupported is wrapped by decode errors the caller should answer by
// trying another decoder: CMYK data, or a warning libjpeg-turbo recovered
// from (such as a truncated file) that a stricter decoder should judge.
var ErrUnsupported = errors.New("turbojpeg: not decoded")
