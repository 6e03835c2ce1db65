// Command benchimages measures Sluice's image path on a folder of photos,
// for scripts/bench-images.sh, which runs libvips on the same files in the
// same run and prints the comparison. It prints one JSON line.
//
//	benchimages -mode thumbnail|watermark|floor -workers N -out DIR PHOTO...
//	benchimages -psnr OURS_DIR REFERENCE_DIR
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	_ "image/jpeg"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/disintegration/imaging"
	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/nodes"
	_ "github.com/sluicehq/sluice/nodes/image"
	"github.com/sluicehq/sluice/nodes/image/internal/turbojpeg"
)

func main() {
	mode := flag.String("mode", "thumbnail", "thumbnail (image.thumbnail 256 px, JPEG q85), watermark (thumbnail + image.watermark text), floor (libjpeg-turbo 1/8 decode alone)")
	workers := flag.Int("workers", 1, "photos processed at once (one per core)")
	out := flag.String("out", "", "folder to write thumbnails to (same base names as the inputs)")
	psnrDirs := flag.Bool("psnr", false, "compare the thumbnails in two folders: benchimages -psnr OURS REFERENCE")
	flag.Parse()
	var err error
	if *psnrDirs {
		err = comparePSNR(flag.Arg(0), flag.Arg(1))
	} else {
		err = run(*mode, *workers, *out, flag.Args())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchimages:", err)
		os.Exit(1)
	}
}

func build(typ, with string) (nodes.Node, error) {
	spec, ok := nodes.Global().Lookup(typ)
	if !ok {
		return nil, fmt.Errorf("no node %s", typ)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(with), &doc); err != nil {
		return nil, err
	}
	cfg, probs := nodes.Decode("bench", typ, spec.Fields, doc.Content[0], nodes.Pos{})
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return spec.Construct(cfg, nodes.Deps{})
}

func run(mode string, workers int, out string, files []string) error {
	steps := []nodes.Node{}
	if mode != "floor" {
		th, err := build("image.thumbnail", `{width: 256, height: 256, quality: 85}`)
		if err != nil {
			return err
		}
		steps = append(steps, th)
	}
	if mode == "watermark" {
		wm, err := build("image.watermark", `{text: "© Sluice", size: 0.06, opacity: 0.6}`)
		if err != nil {
			return err
		}
		steps = append(steps, wm)
	}
	var next atomic.Int64
	var megapixels atomic.Int64 // in pixels
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(files) {
					return
				}
				px, err := one(mode, steps, files[i], out)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", files[i], err)
					return
				}
				megapixels.Add(px)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"mode": mode, "workers": workers, "images": len(files), "seconds": elapsed,
		"megapixels": float64(megapixels.Load()) / 1e6, "max_rss_kb": ru.Maxrss,
	})
}

// one processes a photo read from disk, as a flow would after storage.get,
// and writes the thumbnail; it returns the source's pixel count.
func one(mode string, steps []nodes.Node, file, out string) (int64, error) {
	body, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	px := int64(cfg.Width) * int64(cfg.Height)
	if mode == "floor" {
		_, err := turbojpeg.Decode(body, 0, 0)
		return px, err
	}
	env := nodes.NewEnvelope(nil, 0)
	env.SetBody(body, "image/jpeg")
	for _, s := range steps {
		if err := s.Process(context.Background(), env); err != nil {
			return 0, err
		}
	}
	thumb, err := env.Body(context.Background())
	if err != nil {
		return 0, err
	}
	if out != "" {
		err = os.WriteFile(filepath.Join(out, filepath.Base(file)), thumb, 0o644)
	}
	return px, err
}

// comparePSNR prints the PSNR of each thumbnail in ours against the same
// name in ref (resized to ours when they differ by a pixel of rounding).
func comparePSNR(ours, ref string) error {
	files, _ := filepath.Glob(filepath.Join(ours, "*"))
	var vals []float64
	for _, f := range files {
		a, err := imaging.Open(f)
		if err != nil {
			return err
		}
		b, err := imaging.Open(filepath.Join(ref, filepath.Base(f)))
		if err != nil {
			return err
		}
		if a.Bounds().Size() != b.Bounds().Size() {
			b = imaging.Resize(b, a.Bounds().Dx(), a.Bounds().Dy(), imaging.Lanczos)
		}
		vals = append(vals, psnr(imaging.Clone(a), imaging.Clone(b)))
	}
	if len(vals) == 0 {
		return fmt.Errorf("no thumbnails in %s", ours)
	}
	sort.Float64s(vals)
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"images": len(vals), "psnr_min": vals[0], "psnr_median": vals[len(vals)/2]})
}

func psnr(a, b *image.NRGBA) float64 {
	var sum float64
	for i := range a.Pix {
		if i%4 != 3 {
			d := float64(a.Pix[i]) - float64(b.Pix[i])
			sum += d * d
		}
	}
	mse := sum / float64(len(a.Pix)/4*3)
	if mse == 0 {
		return 99
	}
	return 10 * math.Log10(255*255/mse)
}
