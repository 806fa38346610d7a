"""The Snakemake report of a real run, opened in headless Chromium (Debian's chromium)."""

import os
import shutil

import numpy as np
import pytest
from conftest import snakemake

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SECTIONS = ("Data", "Training", "Prediction", "Metrics", "Run")

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)


def test_report_renders_sections_and_figures(finished_run):
    from matplotlib.image import imread
    from playwright.sync_api import sync_playwright

    workdir, _ = finished_run
    done = snakemake(workdir, "--report", str(workdir / "report.html"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert CHROMIUM, "CI must install Chromium for this test"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto((workdir / "report.html").as_uri())
        sidebar = page.inner_text("body")
        assert all(section in sidebar for section in SECTIONS), sidebar[:500]
        # the front page's headline: the validate volume's errors beside the paper's
        assert "tiny_val" in sidebar and "U-Net, paper Table 1" in sidebar, sidebar[:1500]
        page.get_by_text("Prediction", exact=True).click()
        page.get_by_role("link", name="tiny_val", exact=True).click()  # a subcategory per volume
        # Its two figures, one per tab: the held-out errors, then the volume's overview.
        previous = ""
        for tab in ("held-out slices and errors", "slices, cells and probabilities"):
            page.get_by_text(tab, exact=True).click()
            page.locator("a[iconname=eye]").first.click()
            figure = page.wait_for_function(
                "previous => [...document.images].find(image => image.complete"
                " && image.src.startsWith('data:image/png') && image.src !== previous)",
                arg=previous,
                timeout=10_000,
            )
            assert figure.evaluate("image => image.naturalWidth") > 500, tab
            previous = figure.evaluate("image => image.src")
            page.screenshot(path=str(workdir / "report.png"))
        browser.close()
    pixels = imread(workdir / "report.png")[..., :3]
    # Not a blank page: the figure's grey-scale EM and colour maps give a broad spread of values.
    assert pixels.std() > 0.1 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000
