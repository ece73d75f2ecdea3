"""The report as a person sees it: rendered in a real headless Chromium (Debian's `chromium`; `.ci/run`
installs it). Every plot drew its SVG, every image decoded, no script failed, and the page asked
nothing of the network. Skipped, with the reason, where no browser binary is installed."""

from __future__ import annotations

import os

import pytest

from datosearch import cli
from headless import Chromium, browser_binary
from search_helpers import cli_study, one_thread

BINARY = browser_binary()
pytestmark = pytest.mark.skipif(BINARY is None, reason="no Chromium binary on PATH (install Debian's `chromium` "
                                                        "package, as .ci/run does, to render the report)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    url = cli_study(root, "b", 8)
    with one_thread():
        assert cli.main(["report", "--study", "b", "--storage", url, "--out", str(root / "b.html"),
                         "--pictures", "2"]) == 0
    return root / "b.html"


def test_every_plot_draws_every_image_decodes_and_nothing_is_fetched(report):
    with Chromium(BINARY) as browser:
        page = browser.open(report)
    check = page.check
    assert check["plots"] >= 4 and check["drawn"] == check["plots"]  # speedup-vs-FID, -vs-PSNR, hypervolume, plans
    assert check["images"] >= 2 + 2 * 2 * 3 and check["decoded"] == check["images"]
    assert page.errors == []
    assert page.requests and page.requests[0] == report.resolve().as_uri()
    assert [u for u in page.requests if not u.startswith(("file:", "data:"))] == []  # no network request
    assert os.path.getsize(report) < 8_000_000
