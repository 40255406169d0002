"""Run the teaching notebooks headless and export them as HTML.

    conclab notebooks --out build              # every notebook -> build/NN-topic.html
    conclab notebooks --out build --only 02    # one, by number or name
    conclab notebooks --out build --quick      # quick mode (what CI runs)

Each notebook runs top to bottom in a fresh kernel of *this* Python (the
project's virtualenv), never whatever kernel called "python3" happens to be
installed for the user. The notebook files are not modified: outputs go to
the HTML only, so the committed notebooks stay free of outputs.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..base.files import atomic_write
from ..base.paths import NOTEBOOKS_DIR

NOTEBOOKS = NOTEBOOKS_DIR
CELL_TIMEOUT = 600  # seconds one cell may take (a full-mode sweep is the longest)


@dataclass
class Executed:
    path: Path
    notebook: object  # nbformat.NotebookNode, outputs filled in
    seconds: float
    error: str | None = None


def notebook_paths(only: str | None = None, folder: Path = NOTEBOOKS) -> list[Path]:
    """The lesson notebooks in order; ``only`` picks one by number ("02") or name."""
    paths = sorted(Path(folder).glob("[0-9][0-9]-*.ipynb"))
    if only:
        paths = [
            p for p in paths if p.stem == only or p.stem.split("-", 1)[0] == only or p.name == only
        ]
    return paths


def _kernel_manager_class():
    """A kernel manager that starts ipykernel with sys.executable, whatever specs are installed.

    Handed to nbclient as a class (not an instance) so that nbclient owns the
    kernel: it shuts the kernel down and closes its channels when the run ends.
    """
    from ipykernel.kernelspec import get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            spec = get_kernel_dict()
            spec["argv"][0] = sys.executable
            return KernelSpec(resource_dir="", **spec)

    class ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _this_python(self):
            return ThisPython(parent=self)

    return ThisPythonKernelManager


def execute(path: Path, quick: bool | None = None, cell_timeout: int = CELL_TIMEOUT) -> Executed:
    """Run one notebook in a fresh kernel; return it with outputs (the file is untouched).

    ``quick``: True sets CONCLAB_QUICK=1 for the kernel, False clears it, None
    keeps this process's environment.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    if quick is True:
        env["CONCLAB_QUICK"] = "1"
    elif quick is False:
        env.pop("CONCLAB_QUICK", None)
    env.pop("MPLBACKEND", None)  # the kernel picks its inline backend itself
    client = NotebookClient(
        nb,
        kernel_manager_class=_kernel_manager_class(),
        kernel_name="conclab-python",
        timeout=cell_timeout,
        startup_timeout=120,
        resources={"metadata": {"path": str(path.parent)}},
        # Loopback-only kernel: its "TCP without encryption" warning is noise here.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    t = time.monotonic()
    error = None
    try:
        client.execute(env=env)
    except CellExecutionError as err:
        error = str(err)
    except (CellTimeoutError, DeadKernelError) as err:
        error = f"{type(err).__name__}: {err}"
    return Executed(path, nb, time.monotonic() - t, error)


def to_html(executed: Executed, out_dir: Path) -> Path:
    """Write the executed notebook as one self-contained HTML page."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(executed.notebook)
    out = Path(out_dir) / f"{executed.path.stem}.html"
    atomic_write(out, body)
    out.chmod(0o644)  # a page to share, not a secret (atomic_write's temp file is private)
    return out


def run_all(out_dir: Path, only: str | None = None, quick: bool | None = None) -> int:
    """Execute and export each notebook; return how many failed."""
    paths = notebook_paths(only)
    failed = 0
    for path in paths:
        print(f"running {path.name} ...", flush=True)
        done = execute(path, quick=quick)
        html_path = to_html(done, out_dir)
        status = "ok" if done.error is None else "FAILED"
        print(f"  {status} in {done.seconds:.0f} s -> {html_path}", flush=True)
        if done.error:
            failed += 1
            print(_last_lines(done.error), file=sys.stderr, flush=True)
    return failed


def _last_lines(text, n=15):
    return "\n".join(text.strip().splitlines()[-n:])
