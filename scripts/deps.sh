#!/usr/bin/env bash
# Installs, with apt-get and only when missing, what building Sluice needs
# beyond Go: a C compiler (SQLite and libjpeg-turbo are used through cgo)
# and libjpeg-turbo's TurboJPEG headers. Extra package names given as
# arguments are installed too (when their command or file is missing the
# caller passes them). Build with `-tags purego` to do without libjpeg-turbo.
set -euo pipefail

need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
[ -e /usr/include/turbojpeg.h ] || need+=(libturbojpeg0-dev)
need+=("$@")
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (apt-get)" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
