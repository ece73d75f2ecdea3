"""Size and render time of a study's report in headless Chromium, and a screenshot of its top.

    PYTHONPATH=src python bench/report.py --study demo [--storage URL] [--export DIR] [--out FILE]
                                          [--repeats 3] [--screenshot docs/report.png]

Writes the report (`datosearch report`), then opens it `--repeats` times in a fresh headless Chromium
(`bench/headless.py`, the driver `tests/test_report_browser.py` uses too) and prints the file size, the
time until every plot drew its SVG (median, from navigation start) and the load event, and checks that
every image decoded and nothing was fetched.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from datosearch import cli
from datosearch.atomic import write_atomic
from headless import Chromium, browser_binary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", required=True)
    p.add_argument("--storage")
    p.add_argument("--export", help="export directory with held-out rows (default exports/STUDY)")
    p.add_argument("--out", help="report file (default reports/STUDY.html)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--screenshot", help="PNG of the page's top (1280 px wide)")
    p.add_argument("--screenshot-height", type=int, default=2600)
    args = p.parse_args()
    binary = browser_binary()
    if binary is None:
        print("no Chromium binary on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    out = Path(args.out or f"reports/{args.study}.html")
    argv = ["report", "--study", args.study, "--out", str(out)] + (["--storage", args.storage] if args.storage else [])
    argv += ["--export", args.export] if args.export else []
    start = time.perf_counter()
    if cli.main(argv) != 0:
        return 1
    written_s = time.perf_counter() - start
    drawn, loads = [], []
    for k in range(args.repeats):
        with Chromium(binary) as browser:
            page = browser.open(out, screenshot_height=args.screenshot_height if args.screenshot and k == 0 else None)
        check = page.check
        assert check["drawn"] == check["plots"] and check["decoded"] == check["images"], check
        assert not [u for u in page.requests if not u.startswith(("file:", "data:"))], page.requests
        assert not page.errors, page.errors
        drawn.append(check["plotsDrawnMs"])
        loads.append(page.load_ms)
        if page.screenshot is not None:
            write_atomic(args.screenshot, page.screenshot)
    size = out.stat().st_size
    print(f"{out}: {size / 1e6:.2f} MB, {check['plots']} plots, {check['images']} images; written in {written_s:.0f} s; "
          f"all plots drawn after {statistics.median(drawn) / 1000:.2f} s (median of {args.repeats}: "
          f"{', '.join(f'{d / 1000:.2f}' for d in drawn)}), load event {statistics.median(loads) / 1000:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
