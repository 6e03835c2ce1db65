package examples_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/disintegration/imaging"
	"github.com/stretchr/testify/require"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/gomono"
	"golang.org/x/image/font/gofont/goregular"

	"github.com/sluicehq/sluice/internal/ocrtest"
	"github.com/sluicehq/sluice/nodes/ai"
)

// nodeWorker is bench/ai/worker.mjs: one JSON request per line, answers
// matched by id.
type nodeWorker struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	mu   sync.Mutex
	next int
	wait map[int]chan map[string]any
}

func startNodeWorker(b *testing.B, dir, models string) *nodeWorker {
	cmd := exec.Command("node", filepath.Join(dir, "worker.mjs"), models, "1")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	require.NoError(b, err)
	out, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	w := &nodeWorker{cmd: cmd, in: in, wait: map[int]chan map[string]any{}}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			if m["ready"] == true {
				close(ready)
				continue
			}
			id, _ := m["id"].(float64)
			w.mu.Lock()
			ch := w.wait[int(id)]
			delete(w.wait, int(id))
			w.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(2 * time.Minute):
		b.Fatal("the node worker did not start")
	}
	b.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	return w
}

func (w *nodeWorker) call(b *testing.B, op, path string) map[string]any {
	ch := make(chan map[string]any, 1)
	w.mu.Lock()
	w.next++
	id := w.next
	w.wait[id] = ch
	line, _ := json.Marshal(map[string]any{"id": id, "op": op, "path": path})
	_, err := w.in.Write(append(line, '\n'))
	w.mu.Unlock()
	require.NoError(b, err)
	m := <-ch
	if m["error"] != nil {
		b.Fatalf("node %s %s: %v", op, path, m["error"])
	}
	return m
}

func sluiceCall(b *testing.B, addr, op string, body []byte) map[string]any {
	resp, err := http.Post("http://"+addr+"/bench/"+op, "application/octet-stream", bytes.NewReader(body))
	require.NoError(b, err)
	defer resp.Body.Close()
	var m map[string]any
	require.NoError(b, json.NewDecoder(resp.Body).Decode(&m))
	require.Equal(b, 200, resp.StatusCode, "%v", m)
	return m
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// BenchmarkAIvsNode compares, per call, PaddleOCR through Sluice flows
// (bench/ai/flows.yaml on `sluice run`, over HTTP) with the same models on
// onnxruntime-node (bench/ai/worker.mjs, over a pipe), one intra-op thread
// each, on the same images: the whole OCR of a page (detector + recognizer,
// as @gutenye/ocr-node does it) and the direction classifier on a line.
// Rounds alternate which side goes first; ratios are Node's median time
// over Sluice's (> 1: Sluice is faster). Then throughput with two calls in
// flight, and each process's peak RSS. Run by scripts/bench-ai.sh, which
// installs the Node side and sets SLUICE_BENCH_NODE_DIR.
func BenchmarkAIvsNode(b *testing.B) {
	nodeDir := os.Getenv("SLUICE_BENCH_NODE_DIR")
	if nodeDir == "" {
		b.Skip("run scripts/bench-ai.sh (it installs the Node side and sets SLUICE_BENCH_NODE_DIR)")
	}
	onnxDir, ok := ai.Dir("")
	if !ok {
		b.Skip("no ONNX folder: run ./scripts/models.sh")
	}
	models := filepath.Join(onnxDir, "ppocr")
	imgDir := b.TempDir()

	// The images: pages in three fonts and two sizes, a photographed one;
	// text lines for the classifier, half of them upside down.
	var pages, lines []string
	var pageBody, lineBody [][]byte
	write := func(name string, body []byte) string {
		p := filepath.Join(imgDir, name)
		require.NoError(b, os.WriteFile(p, body, 0o644))
		return p
	}
	for fi, ttf := range [][]byte{goregular.TTF, gobold.TTF, gomono.TTF} {
		for _, px := range []float64{20, 28} {
			img, err := ocrtest.Render(ttf, px, ocrPage...)
			require.NoError(b, err)
			body := pngOfB(b, img)
			pages = append(pages, write(fmt.Sprintf("page-%d-%.0f.png", fi, px), body))
			pageBody = append(pageBody, body)
			if px == 28 {
				body = ocrtest.Photo(img, int64(fi))
				pages = append(pages, write(fmt.Sprintf("photo-%d.jpg", fi), body))
				pageBody = append(pageBody, body)
			}
		}
		for li, text := range ocrPage {
			img, err := ocrtest.Render(ttf, 30, text)
			require.NoError(b, err)
			var line image.Image = tightB(img, 6)
			if li%2 == 1 {
				line = imaging.Rotate180(line)
			}
			body := pngOfB(b, line)
			lines = append(lines, write(fmt.Sprintf("line-%d-%d.png", fi, li), body))
			lineBody = append(lineBody, body)
		}
	}

	flowFile, err := filepath.Abs(filepath.Join("..", "bench", "ai", "flows.yaml"))
	require.NoError(b, err)
	b.Setenv(ai.EnvDir, onnxDir)
	in := startSluiceB(b, flowFile)
	nw := startNodeWorker(b, nodeDir, models)

	type side struct {
		name string
		call func(op string, i int) map[string]any
	}
	sides := []side{
		{"sluice", func(op string, i int) map[string]any {
			if op == "ocr" {
				return sluiceCall(b, in.addr, op, pageBody[i])
			}
			return sluiceCall(b, in.addr, op, lineBody[i])
		}},
		{"node", func(op string, i int) map[string]any {
			if op == "ocr" {
				return nw.call(b, op, pages[i])
			}
			return nw.call(b, op, lines[i])
		}},
	}
	count := map[string]int{"ocr": len(pages), "cls": len(lines)}
	// SLUICE_BENCH_OPS picks what to measure: "ocr cls" by default.
	ops := strings.Fields(os.Getenv("SLUICE_BENCH_OPS"))
	if len(ops) == 0 {
		ops = []string{"ocr", "cls"}
	}
	// Warm up, and check both read the same.
	for _, op := range ops {
		for i := range count[op] {
			s, n := sides[0].call(op, i), sides[1].call(op, i)
			if op == "ocr" {
				fmt.Printf("%s: accuracy sluice %.3f, node %.3f\n", filepath.Base(pages[i]),
					ocrtest.Accuracy(s["text"].(string), strings.Join(ocrPage, "\n")), ocrtest.Accuracy(n["text"].(string), strings.Join(ocrPage, "\n")))
			} else if s["label"] != n["label"] {
				fmt.Printf("%s: sluice says %v, node %v\n", filepath.Base(lines[i]), s["label"], n["label"])
			}
		}
	}

	const rounds = 5
	b.ResetTimer()
	for range b.N {
		for _, op := range ops {
			reps := map[string]int{"ocr": 1, "cls": 4}[op]
			var ratios []float64
			all := map[string][]float64{}
			for r := range rounds {
				order := []side{sides[0], sides[1]}
				if r%2 == 1 {
					order = []side{sides[1], sides[0]}
				}
				med := map[string]float64{}
				for _, s := range order {
					var ms []float64
					for range reps {
						for i := range count[op] {
							start := time.Now()
							s.call(op, i)
							ms = append(ms, float64(time.Since(start).Microseconds())/1000)
						}
					}
					med[s.name] = median(ms)
					all[s.name] = append(all[s.name], ms...)
				}
				ratios = append(ratios, med["node"]/med["sluice"])
			}
			slices.Sort(ratios)
			fmt.Printf("%s per call: sluice p50 %.1f ms, node p50 %.1f ms; node/sluice by round %.2f (min %.2f, max %.2f)\n",
				op, median(all["sluice"]), median(all["node"]), median(ratios), ratios[0], ratios[len(ratios)-1])
			b.ReportMetric(median(ratios), op+"-node/sluice")
			b.ReportMetric(median(all["sluice"]), op+"-sluice-ms")
			b.ReportMetric(median(all["node"]), op+"-node-ms")
		}
		// Throughput with two calls in flight, twice each side, alternating.
		for _, op := range ops {
			n := map[string]int{"ocr": 2 * count["ocr"], "cls": 8 * count["cls"]}[op]
			rate := map[string][]float64{}
			for r := range 4 {
				s := sides[r%2]
				if r >= 2 {
					s = sides[1-r%2]
				}
				var done sync.WaitGroup
				jobs := make(chan int)
				start := time.Now()
				for range 2 {
					done.Go(func() {
						for i := range jobs {
							s.call(op, i%count[op])
						}
					})
				}
				for i := range n {
					jobs <- i
				}
				close(jobs)
				done.Wait()
				rate[s.name] = append(rate[s.name], float64(n)/time.Since(start).Seconds())
			}
			fmt.Printf("%s throughput, 2 in flight: sluice %.1f / %.1f calls/s, node %.1f / %.1f calls/s\n",
				op, rate["sluice"][0], rate["sluice"][1], rate["node"][0], rate["node"][1])
			b.ReportMetric((rate["sluice"][0]+rate["sluice"][1])/2, op+"-sluice-calls/s")
			b.ReportMetric((rate["node"][0]+rate["node"][1])/2, op+"-node-calls/s")
		}
	}
	b.StopTimer()
	s, n := float64(peakRSS(b, in.cmd.Process.Pid))/(1<<20), float64(peakRSS(b, nw.cmd.Process.Pid))/(1<<20)
	fmt.Printf("peak RSS, sessions warm (%s): sluice %.0f MB (2 sessions per model), node %.0f MB (1 session per model)\n", strings.Join(ops, ", "), s, n)
	b.ReportMetric(s, "sluice-peak-MB")
	b.ReportMetric(n, "node-peak-MB")
}

func pngOfB(b *testing.B, img image.Image) []byte {
	var buf bytes.Buffer
	require.NoError(b, imaging.Encode(&buf, img, imaging.PNG))
	return buf.Bytes()
}

// benchSluice is `sluice run` for a benchmark.
type benchSluice struct {
	addr string
	cmd  *exec.Cmd
}

func startSluiceB(b *testing.B, flows ...string) *benchSluice {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(sluiceBin, append([]string{"run", "--listen", addr}, flows...)...)
	cmd.Dir = b.TempDir()
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(b, cmd.Start())
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	require.Eventually(b, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, time.Minute, 50*time.Millisecond, "sluice run did not get ready:\n%s", &log)
	return &benchSluice{addr: addr, cmd: cmd}
}

// tightB crops a rendered line to its dark pixels and a margin, as a
// detector's box would.
func tightB(img *image.NRGBA, pad int) image.Image {
	bd := img.Bounds()
	r := image.Rectangle{Min: bd.Max, Max: bd.Min}
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			if img.NRGBAAt(x, y).R < 128 {
				r = r.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	return img.SubImage(r.Inset(-pad).Intersect(bd))
}
