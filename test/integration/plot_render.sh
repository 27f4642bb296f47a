#!/usr/bin/env bash
# Render an nnpg learning-curve SVG (nn_plot_render) in a real browser and
# check the picture: Debian's headless Chromium takes a screenshot at the
# SVG's own size, and Python's standard library (zlib, struct) decodes the
# PNG and checks that
#   - it has the SVG's size and is not blank (ink, text and several colours);
#   - each curve colour of the SVG (the stroke of its class="curve" groups)
#     covers about as many pixels as its polylines, markers and legend
#     samples should: from 0.4 to 1.25 times the area they would cover at
#     full coverage (dashes by their duty cycle).
# No PostgreSQL needed.  Without arguments (as scripts/test.sh runs every
# script here) it checks the SVG that `make -C test/unit plot-demo` writes
# from a synthetic history.
#
# usage: test/integration/plot_render.sh [SVG_FILE [PNG_OUT]]
#   PNG_OUT keeps the screenshot (default: a temporary file, removed).
# Needs /usr/bin/chromium (apt-get install -y chromium) and /usr/bin/python3.
set -euo pipefail

die() {
	printf 'plot_render: %s\n' "$*" >&2
	exit 1
}

if [ $# -gt 2 ]; then
	die "usage: $0 [SVG_FILE [PNG_OUT]]"
elif [ $# = 0 ]; then
	unit="$(cd "$(dirname "$0")/../unit" && pwd)"
	make -s -C "$unit" plot-demo >/dev/null ||
		die "could not write the demo SVG (make -C test/unit plot-demo)"
	set -- "$unit/build/plot_demo.svg"
fi
svg=$(realpath -e "$1" 2>/dev/null) || die "no such file: $1"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
PYTHON=/usr/bin/python3
[ -x "$CHROMIUM" ] || die "$CHROMIUM not found: apt-get install -y chromium"
[ -x "$PYTHON" ] || die "$PYTHON not found"

tmp=$(mktemp -d /tmp/nnpg-plot-render.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
png=${2:-$tmp/shot.png}

# The SVG's width and height in pixels: the window is exactly that size.
size=$("$PYTHON" - "$svg" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
if root.tag != '{http://www.w3.org/2000/svg}svg':
    sys.exit(f"the root element is {root.tag}, not an SVG svg element")
print(f"{int(float(root.get('width')))},{int(float(root.get('height')))}")
EOF
) || die "could not read the size of $svg"

# --no-sandbox: the browser runs as root here.  A profile of its own, so
# that a running browser does not take the job over.
if ! timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu \
	--hide-scrollbars --force-device-scale-factor=1 --no-first-run \
	--user-data-dir="$tmp/profile" --window-size="$size" \
	--screenshot="$png" "file://$svg" >"$tmp/chromium.log" 2>&1 ||
	[ ! -s "$png" ]; then
	cat "$tmp/chromium.log" >&2
	die "chromium did not write a screenshot of $svg"
fi

"$PYTHON" - "$svg" "$png" <<'EOF'
import math
import struct
import sys
import xml.etree.ElementTree as ET
import zlib

NS = '{http://www.w3.org/2000/svg}'
TOLERANCE = 40          # per channel: anti-aliased edges fall outside
LOW, HIGH = 0.4, 1.25   # of the area at full coverage


def fail(msg):
    print(f"plot_render: {msg}", file=sys.stderr)
    sys.exit(1)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def read_png(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB or RGBA PNG."""
    data = open(path, 'rb').read()
    if data[:8] != b'\x89PNG\r\n\x1a\n':
        fail(f"{path} is not a PNG")
    pos, idat, ihdr = 8, b'', None
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b'IHDR':
            ihdr = struct.unpack('>IIBBBBB', body)
        elif kind == b'IDAT':
            idat += body
        elif kind == b'IEND':
            break
    if ihdr is None:
        fail(f"{path} has no IHDR chunk")
    width, height, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        fail(f"{path}: only 8-bit RGB/RGBA without interlace is read "
             f"(depth {depth}, colour type {ctype}, interlace {interlace})")
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                line[i] = (line[i] + paeth(a, b, c)) & 255
            elif f != 0:
                fail(f"{path}: unknown PNG filter {f} on row {y}")
        rows.append([tuple(line[i:i + 3]) for i in range(0, stride, bpp)])
        prev = line
    return width, height, rows


def hex_rgb(s):
    return tuple(int(s[i:i + 2], 16) for i in (1, 3, 5))


def duty(el):
    """Fraction of a stroke's length drawn, after its dashes."""
    dashes = el.get('stroke-dasharray')
    if not dashes or dashes == 'none':
        return 1.0
    d = [float(x) for x in dashes.replace(',', ' ').split()]
    if len(d) % 2:
        d += d
    return sum(d[0::2]) / sum(d)


def polyline_length(points):
    pts = [tuple(map(float, p.split(','))) for p in points.split()]
    return sum(math.dist(p, q) for p, q in zip(pts, pts[1:]))


def marker_area(el):
    if el.tag == NS + 'circle':
        return math.pi * float(el.get('r')) ** 2
    if el.tag == NS + 'rect':
        return float(el.get('width')) * float(el.get('height'))
    return 0.0


def expected_ink(root):
    """Area at full coverage of each curve colour: curves, markers, legend."""
    ink = {}
    for g in root.iter(NS + 'g'):
        cls = g.get('class')
        if cls == 'curve':
            col = g.get('stroke').lower()
            w = float(g.get('stroke-width', '1'))
            for pl in g.iter(NS + 'polyline'):
                ink[col] = ink.get(col, 0) + \
                    polyline_length(pl.get('points')) * w * duty(g)
        elif cls in ('markers', 'legend-marker'):
            col = g.get('fill', '').lower()
            for m in g:
                ink[col] = ink.get(col, 0) + marker_area(m)
        elif cls == 'legend-entry':
            line = g.find(NS + 'line')
            col = (line.get('stroke') or '').lower()
            x1, x2 = float(line.get('x1')), float(line.get('x2'))
            w = float(line.get('stroke-width', '1'))
            ink[col] = ink.get(col, 0) + abs(x2 - x1) * w * duty(line)
    return ink


svg_path, png_path = sys.argv[1], sys.argv[2]
root = ET.parse(svg_path).getroot()
want_w = int(float(root.get('width')))
want_h = int(float(root.get('height')))
width, height, rows = read_png(png_path)
if (width, height) != (want_w, want_h):
    fail(f"screenshot is {width}x{height}, the SVG {want_w}x{want_h}")

counts = {}
for row in rows:
    for px in row:
        counts[px] = counts.get(px, 0) + 1
total = width * height
background = max(counts, key=counts.get)
ink = total - counts[background]
dark = sum(n for px, n in counts.items() if max(px) < 100)
print(f"screenshot {width}x{height}: background {background}, "
      f"{ink} pixels of ink ({100.0 * ink / total:.1f}%), {dark} dark, "
      f"{len(counts)} colours")
if background != (255, 255, 255):
    fail(f"the background is {background}, not white: did the SVG load?")
if ink < total * 0.01 or dark < 500 or len(counts) < 8:
    fail("the screenshot is blank or nearly so")

curve_colours = {g.get('stroke').lower()
                 for g in root.iter(NS + 'g') if g.get('class') == 'curve'}
if not curve_colours:
    print("no curve in the SVG (a history without values): nothing more "
          "to check")
expected = expected_ink(root)
bad = 0
for col in sorted(curve_colours):
    rgb = hex_rgb(col)
    n = sum(k for px, k in counts.items()
            if max(abs(a - b) for a, b in zip(px, rgb)) <= TOLERANCE)
    lo, hi = LOW * expected[col], HIGH * expected[col]
    verdict = 'ok' if lo <= n <= hi else 'OUT OF RANGE'
    bad += verdict != 'ok'
    print(f"curve colour {col}: {n} pixels, expected {lo:.0f} to {hi:.0f}: "
          f"{verdict}")
if bad:
    fail(f"{bad} curve colour(s) out of the expected pixel range")
print("plot_render: ok")
EOF
