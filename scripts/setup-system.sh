#!/usr/bin/env bash
# Install the Debian tools tympan needs outside Python, idempotently.
#
#   scripts/setup-system.sh           install whatever is missing (root, or sudo)
#   scripts/setup-system.sh --check   only report; exit 1 if something is missing
#
# Why these packages:
#   espeak-ng, festival + voices     speech for the corpus (models/corpus/speech.py)
#   fluidsynth + fluid-soundfont-gm  music (hold music, instruments) from MIDI
#   timidity                         renders the Freepats patches (fetched, not installed)
#                                    for the instrument corpus (models/corpus/solos.py)
#   sox + libsox-fmt-all             G.711 channel, pitch/tempo variants
#   libsndfile1                      soundfile's C library
#   openjdk-17-jdk-headless, maven   the local Kafka broker (scripts/kafka.sh)
#   chromium, chromium-driver        the dashboard's browser test (selenium, headless)
#   ffmpeg, gstreamer1.0-tools,      real RTP senders for `tympan ingest rtp`: the
#     gstreamer1.0-plugins-base/good tests, the benchmark and `make demo` (rtpL16pay, udpsink);
#                                    ffmpeg/ffprobe also decode the uploads libsndfile
#                                    cannot (AAC/M4A: stream/audio/decoders.py)
#
# Nothing is checked by name alone: a package counts as present when
# `dpkg -s` says "install ok installed"; the commands and the soundfont file
# are checked too, so a half-removed install is repaired.
set -euo pipefail

# One list, easy to extend (e.g. chromium chromium-driver for browser tests).
PACKAGES=(
  espeak-ng
  festival
  festlex-cmu
  festvox-kallpc16k
  festvox-kdlpc16k
  festvox-us-slt-hts
  fluidsynth
  fluid-soundfont-gm
  timidity
  sox
  libsox-fmt-all
  libsndfile1
  openjdk-17-jdk-headless
  maven
  chromium
  chromium-driver
  docker-compose
  ffmpeg
  gstreamer1.0-tools
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
)

# Command -> package that provides it (checked with `command -v`).
declare -A COMMANDS=(
  [espeak-ng]=espeak-ng
  [festival]=festival
  [text2wave]=festival
  [fluidsynth]=fluidsynth
  [timidity]=timidity
  [sox]=sox
  [java]=openjdk-17-jdk-headless
  [mvn]=maven
  [ffmpeg]=ffmpeg
  [gst-launch-1.0]=gstreamer1.0-tools
)

# File -> package that provides it.
declare -A FILES=(
  [/usr/share/sounds/sf2/FluidR3_GM.sf2]=fluid-soundfont-gm
)

check_only=0
if [[ "${1:-}" == "--check" ]]; then
  check_only=1
fi

missing=()
add_missing() {
  local pkg="$1"
  local m
  for m in "${missing[@]:-}"; do
    [[ "$m" == "$pkg" ]] && return 0
  done
  missing+=("$pkg")
}

for pkg in "${PACKAGES[@]}"; do
  if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
    # Any Java 17+ on PATH will do (another JDK package, a tarball install).
    if [[ "$pkg" == "openjdk-17-jdk-headless" ]] && command -v java >/dev/null 2>&1; then
      continue
    fi
    if [[ "$pkg" == "maven" ]] && command -v mvn >/dev/null 2>&1; then
      continue
    fi
    add_missing "$pkg"
  fi
done
for cmd in "${!COMMANDS[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || add_missing "${COMMANDS[$cmd]}"
done
for path in "${!FILES[@]}"; do
  [[ -f "$path" ]] || add_missing "${FILES[$path]}"
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup-system: everything present (${#PACKAGES[@]} packages checked)"
  exit 0
fi

echo "setup-system: missing: ${missing[*]}"
if [[ $check_only -eq 1 ]]; then
  exit 1
fi

if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "setup-system: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2
  exit 2
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=300)
echo "setup-system: apt-get update"
if ! "${SUDO[@]}" apt-get "${APT_OPTS[@]}" update; then
  echo "setup-system: 'apt-get update' failed; check network access to the Debian mirror" >&2
  exit 3
fi
echo "setup-system: installing: ${missing[*]}"
if ! "${SUDO[@]}" apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${missing[@]}"; then
  echo "setup-system: 'apt-get install ${missing[*]}' failed (see the apt output above)" >&2
  exit 4
fi
echo "setup-system: done"
