"""Class in a real browser: every notebook opened in JupyterLab, in headless Chromium, and run.

This is what an instructor does in front of a class: start JupyterLab (as
`make jupyter` does, with the same jupyter_server_config.py), open a notebook,
Run > Run All Cells, watch it. Each notebook runs in quick mode
(CONCLAB_QUICK=1 in the server's environment, which its kernels inherit) and
must end with every code cell run, no error output, every figure shown as an
image and every progress bar drawn as a widget. A screenshot of each finished
notebook goes to build/screens/. Afterwards nothing may be left running.

Chromium is the system's (`apt-get install chromium`), driven by Playwright
through ``executable_path``: nothing is downloaded (never `playwright install`).
Without Chromium the suite skips with one line saying how to install it; with
CI=true it fails instead. JupyterLab runs on a copy of notebooks/, so nothing
it saves can touch the committed notebooks, and keeps its settings, workspaces
and runtime files in a temporary folder, away from $HOME and the repo.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from procs import descendants, kill_leftovers, snapshot, wait_gone

from conclab.base import system
from conclab.base.paths import NOTEBOOKS_DIR, ROOT
from conclab.base.system import ProgramMissing, missing
from conclab.processes.launcher import free_port

pytestmark = pytest.mark.browser

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
SCREENS = ROOT / "build" / "screens"
CONFIG = ROOT / "jupyter_server_config.py"
INSTALL_HINT = (
    "`apt-get install chromium` (Debian/Ubuntu), or point CONCLAB_CHROMIUM at a Chromium "
    "(Ubuntu's snap: /snap/bin/chromium); or leave the browser tests out: -m 'not browser'"
)
# Headless, and quiet: no sandbox (root in a container), no GPU, and no
# background traffic (updates, sync, field trials) - nothing leaves this machine.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_BUDGET_S = 240  # one notebook in quick mode, generously; the suite reports the real times
# JupyterLab settings for the run: keep every cell in the page (no windowing, so
# each output can be inspected and screenshotted), never autosave, no news prompt.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": '{"windowingMode": "none"}',
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": '{"autosave": false}',
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": '{"fetchNews": "false"}',
}


def find_chromium() -> str | None:
    """$CONCLAB_CHROMIUM, else chromium or chromium-browser on the PATH."""
    return system.find_chromium()


def chromium_missing() -> str | None:
    """None when Chromium is installed; else one line saying how to install it.

    Under CI (CI=true) a missing browser is a failure, not a skip: CI must run
    this suite (.ci/run installs Chromium).
    """
    try:
        return missing("Chromium", find_chromium(), INSTALL_HINT)
    except ProgramMissing as err:
        pytest.fail(str(err), pytrace=False)


class Lab:
    """A JupyterLab server on a free loopback port, started the way `make jupyter` starts it."""

    def __init__(self, home: Path):
        self.home = home
        self.root = home / "notebooks"
        shutil.copytree(
            NOTEBOOKS_DIR,
            self.root,
            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
        )
        settings = home / "settings"
        for name, text in LAB_SETTINGS.items():
            (settings / name).parent.mkdir(parents=True, exist_ok=True)
            (settings / name).write_text(text)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        env = dict(
            os.environ,
            CONCLAB_QUICK="1",
            JUPYTER_CONFIG_DIR=str(home / "config"),
            JUPYTER_DATA_DIR=str(home / "data"),
            JUPYTER_RUNTIME_DIR=str(home / "runtime"),
            IPYTHONDIR=str(home / "ipython"),
        )
        env.pop("MPLBACKEND", None)  # the kernels pick their inline backend themselves
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            f"--config={CONFIG}",
            "--no-browser",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={home / 'workspaces'}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: read cells and outputs
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")  # as `make jupyter` does for root
        self.log = home / "jupyterlab.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=home,
            )
        self.seen = snapshot([self.proc.pid])  # every process of the lab ever seen (psutil handles)
        self._wait_ready()

    def url(self, path: str = "lab") -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def api(self, method: str, path: str):
        response = httpx.request(
            method,
            f"http://127.0.0.1:{self.port}/api/{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=10,
            trust_env=False,
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def _wait_ready(self, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                self.api("GET", "status")
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        pytest.fail(
            f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log_tail()}", pytrace=False
        )

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def watch(self):
        """Remember every process below the server now (kernels come and go)."""
        known = {p.pid for p in self.seen}
        self.seen += [p for p in descendants(self.proc.pid) if p.pid not in known]

    def kernels(self):
        """The kernel processes seen so far."""
        found = []
        for p in self.seen:
            try:
                if "ipykernel_launcher" in " ".join(p.cmdline()):
                    found.append(p)
            except Exception:  # noqa: BLE001 - gone meanwhile
                pass
        return found

    def stop(self) -> list:
        """Shut every kernel down, stop the server by its pid; return what still runs."""
        self.watch()
        if self.proc.poll() is None:
            try:
                for kernel in self.api("GET", "kernels"):
                    self.api("DELETE", f"kernels/{kernel['id']}")
            except httpx.HTTPError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return wait_gone(self.seen, timeout=15)


@pytest.fixture(scope="module")
def chromium():
    missing = chromium_missing()
    if missing:
        pytest.skip(missing)
    return find_chromium()


@pytest.fixture(scope="module")
def lab(chromium, tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("jupyterlab"))
    yield lab
    left = lab.stop()
    kill_leftovers(left)


@pytest.fixture(scope="module")
def browser(chromium, lab):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


# JavaScript read in the page: the notebook that has the focus, its kernel, its cells.
NOTEBOOK_READY = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return Boolean(panel && panel.content && panel.content.model
        && kernel && kernel.status === 'idle');
}"""
NOTEBOOK_STATE = """() => {
    const WIDGET = 'application/vnd.jupyter.widget-view+json';
    const panel = window.jupyterapp.shell.currentWidget;
    const cells = [];
    panel.content.widgets.forEach((widget, index) => {
        const model = widget.model;
        if (model.type !== 'code') return;
        const outputs = model.outputs.toJSON();
        const node = widget.node;
        cells.push({
            index,
            count: model.executionCount,
            errors: outputs.filter(o => o.output_type === 'error')
                .map(o => `${o.ename}: ${o.evalue}`),
            images: outputs.filter(o => o.data && o.data['image/png']).length,
            figureText: outputs.filter(o => o.data && !o.data['image/png']
                && String(o.data['text/plain'] || '').startsWith('<Figure')).length,
            widgets: outputs.filter(o => o.data && o.data[WIDGET]).length,
            // a widget the page could not draw falls back to its text (tqdm's "0%|  | 0/5")
            widgetAsText: outputs.filter(o => o.data && o.data[WIDGET])
                .map(o => String(o.data['text/plain'] || '').trim())
                .filter(text => text && Array.from(node.querySelectorAll('.jp-RenderedText'))
                    .some(e => e.innerText.trim().startsWith(text))).length,
            stderr: outputs.filter(o => o.name === 'stderr').map(o => o.text).join(''),
            shownImages: Array.from(node.querySelectorAll('.jp-RenderedImage img'))
                .filter(img => img.complete && img.naturalWidth > 0).length,
            shownBars: node.querySelectorAll(
                '.jupyter-widgets .widget-hprogress, .widget-hprogress').length,
            widgetErrors: (node.innerText.match(/Error displaying widget|Error rendering output/g)
                || []).length,
        });
    });
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    return {cells, kernel: kernel ? kernel.status : 'none'};
}"""


def run_all_cells(page, lab, budget_s: float):
    """Run > Run All Cells from the menu, then wait until every code cell ran or one failed."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    deadline = time.monotonic() + budget_s
    idle_with_error = 0
    while True:
        time.sleep(1.0)
        lab.watch()
        state = page.evaluate(NOTEBOOK_STATE)
        pending = [c for c in state["cells"] if c["count"] is None]
        failed = any(c["errors"] for c in state["cells"])
        if state["kernel"] == "idle" and not pending:
            return state
        idle_with_error = idle_with_error + 1 if failed and state["kernel"] == "idle" else 0
        if idle_with_error >= 3 or time.monotonic() > deadline:
            return state


def screenshot(page, name: str) -> Path:
    """The whole notebook in one picture: the viewport grows to the notebook's height."""
    height = page.evaluate("""() => {
        const outer = document.querySelector(
            '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
        return outer ? outer.scrollHeight : 900;
    }""")
    page.set_viewport_size({"width": 1280, "height": min(16000, max(900, height + 160))})
    page.evaluate(
        """() => document.querySelectorAll('.jp-WindowedPanel-outer')
            .forEach(e => { e.scrollTop = 0; })"""
    )
    page.wait_for_timeout(500)
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1280, "height": 900})
    return path


def test_there_are_notebooks_to_open():
    assert NOTEBOOKS, f"no *.ipynb in {NOTEBOOKS_DIR}"


def test_file_browser_shows_students_only_the_notebooks(lab, page):
    page.goto(lab.url("lab/tree"))
    items = page.locator(".jp-DirListing-content .jp-DirListing-itemName")
    items.first.wait_for(timeout=60_000)
    shown = set(items.all_inner_texts())
    expected = {p.name for p in NOTEBOOKS} | {"README.md"}
    assert shown == expected, f"file browser lists {sorted(shown)}, expected {sorted(expected)}"
    texts = sorted(p.name for p in lab.root.glob("*.py"))
    assert not set(texts) & shown, "the notebooks' jupytext .py twins are listed"


@pytest.mark.timeout(RUN_BUDGET_S + 120)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_jupyterlab(lab, page, path):
    started = time.monotonic()
    # A workspace of its own, reset: JupyterLab would otherwise reopen (and start
    # kernels for) the notebooks the earlier tests opened.
    page.goto(lab.url(f"lab/workspaces/{path.stem}/tree/{path.name}") + "&reset")
    page.wait_for_function(NOTEBOOK_READY, timeout=90_000)
    assert len(lab.api("GET", "kernels")) == 1, "only this notebook's kernel runs"
    state = run_all_cells(page, lab, RUN_BUDGET_S)
    seconds = time.monotonic() - started
    shot = screenshot(page, path.stem)
    print(f"{path.name}: ran in {seconds:.0f} s in JupyterLab; screenshot {shot.relative_to(ROOT)}")

    cells = state["cells"]
    errors = [f"cell {c['index']}: {e}" for c in cells for e in c["errors"]]
    assert not errors, f"{path.name}: error output in " + "; ".join(errors)
    pending = [c["index"] for c in cells if c["count"] is None]
    assert not pending, (
        f"{path.name}: cells {pending} never ran within {RUN_BUDGET_S} s (see {shot})"
    )
    assert state["kernel"] == "idle"

    # Figures: every figure output is a PNG, and the page really shows it.
    as_text = [c["index"] for c in cells if c["figureText"]]
    assert not as_text, (
        f"{path.name}: cells {as_text} printed a Figure's text instead of drawing it"
    )
    unshown = [c["index"] for c in cells if c["shownImages"] < c["images"]]
    assert not unshown, f"{path.name}: cells {unshown} have images the page does not show"

    # Progress bars: drawn by the widget manager, never tqdm's text fallback.
    for c in cells:
        assert "IProgress not found" not in c["stderr"], (
            f"{path.name}: cell {c['index']}: tqdm fell back to text"
        )
        assert not c["widgetErrors"], f"{path.name}: cell {c['index']}: a widget failed to display"
        assert not c["widgetAsText"], (
            f"{path.name}: cell {c['index']}: a progress bar is shown as text"
        )
    # A bar made with leave=False (the driver's own, per run) is gone by now; the
    # experiments' bars stay. A notebook that showed bars must still show one.
    if any(c["widgets"] for c in cells):
        assert sum(c["shownBars"] for c in cells), (
            f"{path.name}: no progress bar is shown as a widget"
        )

    # The kernels are this project's Python, and shutting the notebook's down ends its process.
    kernels = lab.kernels()
    assert kernels, "no kernel process was seen"
    assert {Path(k.cmdline()[0]) for k in kernels if k.is_running()} <= {Path(sys.executable)}
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    left = wait_gone(kernels, timeout=15)
    assert not left, f"kernel processes still running after shutdown: {[p.pid for p in left]}"


def test_jupyterlab_stops_and_leaves_nothing_running(lab):
    lab.watch()
    assert lab.api("GET", "kernels") == [], "a kernel is still running"
    before = list(lab.seen)
    left = lab.stop()
    assert lab.proc.returncode is not None, "JupyterLab did not stop"
    assert not left, f"still running after JupyterLab stopped: {[(p.pid, p.name()) for p in left]}"
    assert len(before) >= 1
