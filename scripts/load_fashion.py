#!/usr/bin/python3
"""Load Fashion-MNIST into PostgreSQL for nnpg.

Reads the idx files of Debian's dataset-fashion-mnist package and fills, for
each split (train: 60,000 rows, test: 10,000 rows), one table per layout:

  bytea  PREFIX_train, PREFIX_test:           (id int, img bytea, label int)
         img is the 784 raw pixel bytes (28 x 28, row-major, 0..255)
  real   PREFIX_train_real, PREFIX_test_real: (id int, pixels real[], label int)
         pixels is the same image scaled to [0, 1] (byte / 255)

id counts from 1 in file order and is the primary key; label is the class
0..9. Tables are dropped and recreated. Data goes through `COPY ... FROM
STDIN` piped into psql (--jobs connections at once, each copying a slice of
every table), which connects as the PG* environment variables say. Standard library only, for Debian's /usr/bin/python3.
"""

import argparse
import gzip
import os
import shutil
import struct
import subprocess
import sys
import threading
import time

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
LAYOUTS = ("bytea", "real")
IDX_UBYTE = 0x08  # idx element type code for unsigned byte


def open_idx(data_dir, stem):
    """Open an idx file, gzipped (as Debian ships it) or not."""
    for name, opener in ((stem + ".gz", gzip.open), (stem, open)):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path, opener(path, "rb")
    sys.exit("load_fashion: cannot find %s[.gz] in %s (install the "
             "dataset-fashion-mnist package)" % (stem, data_dir))


def read_idx(data_dir, stem, ndim, limit):
    """Return (dims, payload bytes) of an unsigned-byte idx file.

    The header is: two zero bytes, the type code, the number of dimensions,
    then each dimension as a big-endian uint32.
    """
    path, f = open_idx(data_dir, stem)
    with f:
        magic = f.read(4)
        if len(magic) != 4 or magic[0] != 0 or magic[1] != 0:
            sys.exit("load_fashion: %s is not an idx file" % path)
        if magic[2] != IDX_UBYTE or magic[3] != ndim:
            sys.exit("load_fashion: %s has type 0x%02x and %d dimensions, "
                     "expected 0x%02x and %d"
                     % (path, magic[2], magic[3], IDX_UBYTE, ndim))
        dims = list(struct.unpack(">%dI" % ndim, f.read(4 * ndim)))
        if limit is not None:
            dims[0] = min(dims[0], limit)
        item = 1
        for d in dims[1:]:
            item *= d
        payload = f.read(dims[0] * item)
    if len(payload) != dims[0] * item:
        sys.exit("load_fashion: %s is truncated" % path)
    return dims, payload


def float32_text(value):
    """Shortest decimal text that reads back as the same float32 as value."""
    target = struct.unpack("<f", struct.pack("<f", value))[0]
    for digits in range(1, 10):
        text = "%.*g" % (digits, target)
        if struct.unpack("<f", struct.pack("<f", float(text)))[0] == target:
            return text
    return repr(target)


# Pixel byte -> its scaled text for a real[] literal: 256 strings built once,
# so a row is one join over a table lookup instead of 784 float formats.
PIXEL_TEXT = [float32_text(b / 255.0) for b in range(256)]


def copy_text(layout, images, labels, first, last, size):
    """Yield the COPY text of rows first..last-1, in chunks of many rows."""
    chunk = []
    lookup = PIXEL_TEXT.__getitem__
    for i in range(first, last):
        img = images[i * size:(i + 1) * size]
        if layout == "bytea":
            # COPY text \\x... arrives as \x..., bytea's hex format
            value = "\\\\x" + img.hex()
        else:
            value = "{" + ",".join(map(lookup, img)) + "}"
        chunk.append("%d\t%s\t%d\n" % (i + 1, value, labels[i]))
        if len(chunk) == 1000:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)


def table_name(prefix, split, layout):
    return "%s_%s%s" % (prefix, split, "_real" if layout == "real" else "")


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def run_psql(psql, pieces):
    """Pipe the SQL text pieces into one psql process; return its exit code."""
    proc = subprocess.Popen(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        stdin=subprocess.PIPE, encoding="ascii")
    try:
        for text in pieces:
            proc.stdin.write(text)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # psql stopped early; its exit code tells why
    return proc.wait()


def main():
    ap = argparse.ArgumentParser(
        description="Load Fashion-MNIST into PostgreSQL tables "
                    "(connection from the PG* environment variables).")
    ap.add_argument("--limit", type=int, metavar="N",
                    help="load at most N rows of each split")
    ap.add_argument("--layouts", default="bytea,real",
                    help="comma-separated: bytea, real (default: both)")
    ap.add_argument("--splits", default="train,test",
                    help="comma-separated: train, test (default: both)")
    ap.add_argument("--prefix", default="fashion",
                    help="table name prefix (default: fashion)")
    ap.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                    help="folder of the idx files (default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="parallel COPY connections (default: cores)")
    ap.add_argument("--psql", default=None,
                    help="psql binary (default: PostgreSQL 15's, else PATH)")
    args = ap.parse_args()

    layouts = [x for x in args.layouts.split(",") if x]
    splits = [x for x in args.splits.split(",") if x]
    for x in layouts:
        if x not in LAYOUTS:
            ap.error("unrecognized layout %r (bytea or real)" % x)
    for x in splits:
        if x not in SPLITS:
            ap.error("unrecognized split %r (train or test)" % x)
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be at least 1")
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    psql = args.psql
    if psql is None:
        psql = "/usr/lib/postgresql/15/bin/psql"
        if not os.access(psql, os.X_OK):
            psql = shutil.which("psql") or sys.exit("load_fashion: no psql")

    start = time.monotonic()
    tables = []  # (name, layout, images, labels, rows, row size)
    for split in splits:
        image_stem, label_stem = SPLITS[split]
        dims, images = read_idx(args.data_dir, image_stem, 3, args.limit)
        (nlabels,), labels = read_idx(args.data_dir, label_stem, 1,
                                      args.limit)
        if nlabels != dims[0]:
            sys.exit("load_fashion: %s has %d images but %d labels"
                     % (split, dims[0], nlabels))
        for layout in layouts:
            tables.append((table_name(args.prefix, split, layout), layout,
                           images, labels, dims[0], dims[1] * dims[2]))

    # 1. (Re)create the empty tables, committed so every loader sees them.
    ddl = ["SET client_min_messages = warning;\n"]
    for name, layout, _, _, _, _ in tables:
        col = "img bytea" if layout == "bytea" else "pixels real[]"
        ddl.append("DROP TABLE IF EXISTS %s;\n"
                   "CREATE TABLE %s (id int NOT NULL, %s NOT NULL, "
                   "label int NOT NULL);\n"
                   % (quote_ident(name), quote_ident(name), col))
    if run_psql(psql, ddl) != 0:
        sys.exit("load_fashion: could not create the tables")

    # 2. Fill them over --jobs connections at once: the server's parsing of
    #    real[] text is the slow part, so it is spread over the cores. Loader
    #    j copies the j-th slice of every table.
    def loader(j):
        for name, layout, images, labels, n, size in tables:
            first, last = n * j // args.jobs, n * (j + 1) // args.jobs
            if first == last:
                continue
            col = "img" if layout == "bytea" else "pixels"
            yield "COPY %s (id, %s, label) FROM STDIN;\n" % (
                quote_ident(name), col)
            yield from copy_text(layout, images, labels, first, last, size)
            yield "\\.\n"

    codes = [None] * args.jobs

    def work(j):
        codes[j] = run_psql(psql, loader(j))

    threads = [threading.Thread(target=work, args=(j,))
               for j in range(args.jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any(c != 0 for c in codes):
        sys.exit("load_fashion: COPY failed (psql exit codes %s)" % codes)

    # 3. Key and statistics.
    final = ["SET client_min_messages = warning;\n"]
    for name, _, _, _, _, _ in tables:
        final.append("ALTER TABLE %s ADD PRIMARY KEY (id);\nANALYZE %s;\n"
                     % (quote_ident(name), quote_ident(name)))
    if run_psql(psql, final) != 0:
        sys.exit("load_fashion: could not index the tables")

    for name, _, _, _, n, _ in tables:
        print("loaded %-24s %6d rows" % (name, n))
    print("load_fashion: %d tables in %.1f s"
          % (len(tables), time.monotonic() - start))


if __name__ == "__main__":
    main()
