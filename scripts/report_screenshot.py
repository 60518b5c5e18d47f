"""A screenshot of an `lsvr eval --report` page, as docs/report.png shows one: Debian's headless
chromium (playwright drives it, as tests/test_report_browser.py does) at 1200 px wide, the top
HEIGHT px of the page, scaled to WIDTH px and cut to 256 colours so that it stays small.

    python scripts/report_screenshot.py REPORT_DIR docs/report.png [--height 1600] [--width 900]
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a folder lsvr eval --report wrote")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--height", type=int, default=1600, help="page pixels from the top (default 1600)")
    parser.add_argument("--width", type=int, default=900, help="the picture's width (default 900)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": args.height},
        )  # fmt: skip
        page = context.new_page()
        page.goto((args.report / "index.html").resolve().as_uri(), wait_until="load")
        shot = page.screenshot(clip={"x": 0, "y": 0, "width": 1200, "height": args.height})
        context.close()
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    image = image.resize((args.width, round(args.height * args.width / 1200)), Image.Resampling.LANCZOS)
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out}: {args.out.stat().st_size} bytes, {image.width} x {image.height}")


if __name__ == "__main__":
    main()
