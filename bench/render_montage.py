"""A picture of held-out renders next to the photos: one row per run group, the photo first.

Each ``--row`` names a label, a test image and the render folders (``bench_train.py --renders``)
of the methods, in the order of ``--columns``; every row is scaled to the same height.

    python bench/render_montage.py docs/captures.png --columns ngp,splat,mipnerf \\
        --row "dtu-scan65 1/4:00000:/tmp/r/ngp,/tmp/r/splat,/tmp/r/mipnerf"
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

ROW_HEIGHT = 150        # pixels of every row's images
LABEL_HEIGHT = 14       # pixels above each image for its caption


def _tile(path: Path, caption: str) -> Image.Image:
    """The image at ``path`` scaled to ``ROW_HEIGHT`` rows with ``caption`` above it, on white."""
    if not path.is_file():
        raise SystemExit(f"{path}: no such image (bench_train.py --renders writes <view>.png and <view>_gt.png)")
    image = Image.open(path).convert("RGB")
    width = round(image.width * ROW_HEIGHT / image.height)
    tile = Image.new("RGB", (width, ROW_HEIGHT + LABEL_HEIGHT), "white")
    tile.paste(image.resize((width, ROW_HEIGHT), Image.LANCZOS), (0, LABEL_HEIGHT))
    ImageDraw.Draw(tile).text((2, 1), caption, fill="black")
    return tile


def montage(rows: list[tuple[str, str, list[Path]]], columns: list[str]) -> Image.Image:
    """``rows``: (label, test image name, one render folder per column) -> the whole picture."""
    lines = []
    for label, view, folders in rows:
        if len(folders) != len(columns):
            raise SystemExit(f"row {label!r} has {len(folders)} folders for {len(columns)} columns")
        tiles = [_tile(folders[0] / f"{view}_gt.png", f"{label}: photo")]
        tiles += [_tile(folder / f"{view}.png", name) for name, folder in zip(columns, folders)]
        lines.append(tiles)
    width = max(sum(t.width for t in tiles) for tiles in lines)
    picture = Image.new("RGB", (width, len(lines) * (ROW_HEIGHT + LABEL_HEIGHT)), "white")
    for y, tiles in enumerate(lines):
        x = 0
        for tile in tiles:
            picture.paste(tile, (x, y * (ROW_HEIGHT + LABEL_HEIGHT)))
            x += tile.width
    return picture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--columns", required=True, help="method names, e.g. ngp,splat,mipnerf")
    parser.add_argument("--row", action="append", required=True, metavar="LABEL:VIEW:DIR,DIR,...")
    args = parser.parse_args()
    rows = []
    for row in args.row:
        label, view, folders = row.rsplit(":", 2)
        rows.append((label, view, [Path(f) for f in folders.split(",")]))
    montage(rows, args.columns.split(",")).save(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
