#!/usr/bin/env python3
"""Build the Teams app package (manifest.json + icons, zipped) for upload.

    python deploy/teams/package.py --app-id <MICROSOFT_APP_ID> --host srebot.example.com
    -> srebot-teams.zip  (Teams: Apps > Manage your apps > Upload an app)

Placeholders in manifest.json: {{MICROSOFT_APP_ID}}, {{HOST}}, {{DEVELOPER_NAME}}.
`--icons` rewrites the placeholder icons color.png (192x192) and outline.png
(32x32, white on transparent). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import sys
import zipfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d+)?$")
ACCENT = (0x1D, 0x35, 0x57)


def _png(width: int, height: int, pixel) -> bytes:
    """A minimal RGBA PNG; pixel(x, y) -> (r, g, b, a)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            rows.extend(pixel(x, y))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + chunk(b"IEND", b"")


def _ring(size: int, outer: float, inner: float):
    """Pixels inside a ring centred in a size x size square."""
    c = (size - 1) / 2

    def inside(x: int, y: int) -> bool:
        d = ((x - c) ** 2 + (y - c) ** 2) ** 0.5
        return inner <= d <= outer

    return inside


def color_icon() -> bytes:
    ring = _ring(192, 62, 44)
    dot = _ring(192, 16, 0)
    return _png(192, 192, lambda x, y: (255, 255, 255, 255) if ring(x, y) or dot(x, y) else (*ACCENT, 255))


def outline_icon() -> bytes:
    ring = _ring(32, 13, 10)
    dot = _ring(32, 3, 0)
    return _png(32, 32, lambda x, y: (255, 255, 255, 255) if ring(x, y) or dot(x, y) else (0, 0, 0, 0))


def write_icons(directory: Path = HERE) -> None:
    (directory / "color.png").write_bytes(color_icon())
    (directory / "outline.png").write_bytes(outline_icon())


def render_manifest(app_id: str, host: str, developer: str) -> dict:
    if not GUID.match(app_id):
        raise ValueError(f"app id {app_id!r} is not a GUID (the Azure Bot's Microsoft App ID)")
    if not HOST.match(host):
        raise ValueError(f"host {host!r} must be a bare host name like srebot.example.com (no scheme, no path)")
    text = (HERE / "manifest.json").read_text(encoding="utf-8")
    values = {"MICROSOFT_APP_ID": app_id, "HOST": host, "DEVELOPER_NAME": developer}
    text = re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)
    return json.loads(text)


def build(app_id: str, host: str, developer: str, out: Path) -> Path:
    manifest = render_manifest(app_id, host, developer)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        # files at the root of the zip, no folder
        zf.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
        zf.write(HERE / "color.png", "color.png")
        zf.write(HERE / "outline.png", "outline.png")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app-id", default=os.environ.get("MICROSOFT_APP_ID", ""), help="Azure Bot Microsoft App ID")
    parser.add_argument("--host", default=os.environ.get("SREBOT_PUBLIC_HOST", ""), help="public host of srebot")
    parser.add_argument("--developer", default="Platform SRE", help="developer name shown in Teams (max 32 chars)")
    parser.add_argument("--out", type=Path, default=Path("srebot-teams.zip"))
    parser.add_argument("--icons", action="store_true", help="only rewrite the placeholder icons")
    args = parser.parse_args(argv)
    if args.icons:
        write_icons()
        return 0
    try:
        path = build(args.app_id, args.host, args.developer, args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
