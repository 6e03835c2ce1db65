// The Node side of the AI benchmarks: answers one JSON request per stdin
// line with one JSON line on stdout, so a driver times each call end to end
// as it times Sluice's (see scripts/bench-ai.sh):
//   {"op": "ocr", "path": "page.png"}  → {"text": "...", "lines": 5}
//     @gutenye/ocr-node: PaddleOCR's detector and recognizer on onnxruntime-node,
//     images decoded and resized with sharp (libvips)
//   {"op": "cls", "path": "line.png"}  → {"label": "0" | "180", "score": 0.99}
//     PaddleOCR's direction classifier: sharp decodes and resizes to 48 px
//     high (at most 192 wide, padded right), normalized to [-1, 1], BGR
// argv: the ppocr models folder, intra-op threads.
import readline from 'node:readline'
import Ocr from '@gutenye/ocr-node'
import * as ort from 'onnxruntime-node'
import sharp from 'sharp'

const [models, threadsArg] = process.argv.slice(2)
const threads = Number(threadsArg || 1)
const onnxOptions = { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential' }

const ocr = await Ocr.create({
  models: {
    detectionPath: `${models}/det.onnx`,
    recognitionPath: `${models}/rec.onnx`,
    dictionaryPath: `${models}/keys.txt`,
  },
  onnxOptions,
})
const cls = await ort.InferenceSession.create(`${models}/cls.onnx`, onnxOptions)

async function classify(path) {
  const H = 48
  const W = 192
  const meta = await sharp(path).metadata()
  const w = Math.min(W, Math.max(1, Math.ceil((H * meta.width) / meta.height)))
  const { data } = await sharp(path).removeAlpha().resize({ width: w, height: H, fit: 'fill' }).raw().toBuffer({ resolveWithObject: true })
  const plane = H * W
  const input = new Float32Array(3 * plane)
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * 3
      const i = y * W + x
      input[i] = data[p + 2] / 127.5 - 1
      input[plane + i] = data[p + 1] / 127.5 - 1
      input[2 * plane + i] = data[p] / 127.5 - 1
    }
  }
  const out = await cls.run({ [cls.inputNames[0]]: new ort.Tensor('float32', input, [1, 3, H, W]) })
  const [p0, p180] = out[cls.outputNames[0]].data
  return p180 > p0 ? { label: '180', score: p180 } : { label: '0', score: p0 }
}

async function handle(req) {
  if (req.op === 'ocr') {
    const lines = await ocr.detect(req.path)
    return { text: lines.map((l) => l.text).join('\n'), lines: lines.length }
  }
  if (req.op === 'cls') return classify(req.path)
  throw new Error(`unknown op ${req.op}`)
}

// Requests are answered as they finish: a driver may keep several in
// flight (the throughput run keeps two).
const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const req = JSON.parse(line)
  handle(req).then(
    (res) => process.stdout.write(`${JSON.stringify({ id: req.id, ...res })}\n`),
    (err) => process.stdout.write(`${JSON.stringify({ id: req.id, error: String(err) })}\n`),
  )
})
process.stdout.write(`${JSON.stringify({ ready: true, ort: ort.env.versions?.common ?? '' })}\n`)
