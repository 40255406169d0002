"""The dev container and the install script: no Docker daemon runs here, so what
is checked is that the files are valid and name what exists."""

import json
import re
import shutil
import subprocess

import pytest

from conclab.base.paths import ROOT

DEVCONTAINER = ROOT / ".devcontainer"
SCRIPT = ROOT / ".ci" / "install-system-packages"


def config():
    return json.loads((DEVCONTAINER / "devcontainer.json").read_text())


def make_targets():
    return set(re.findall(r"^([a-zA-Z_-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def test_devcontainer_json_is_valid_and_names_its_dockerfile():
    build = config()["build"]
    assert (DEVCONTAINER / build["dockerfile"]).is_file()
    context = (DEVCONTAINER / build["context"]).resolve()
    for line in (DEVCONTAINER / build["dockerfile"]).read_text().splitlines():
        if line.startswith("COPY "):
            source = line.split()[1]
            assert (context / source).exists(), (
                f"the Dockerfile copies {source}, which is not in {context}"
            )


def test_the_container_installs_the_same_list_as_ci():
    dockerfile = (DEVCONTAINER / config()["build"]["dockerfile"]).read_text()
    assert ".ci/install-system-packages" in dockerfile
    assert ".ci/install-system-packages" in (ROOT / ".ci" / "run").read_text()
    listed = subprocess.run(
        [str(SCRIPT), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert {entry.split(":")[0] for entry in listed} >= {"chromium", "nginx", "wrk"}


def test_the_container_sets_up_with_make_targets_that_exist():
    commands = config()["postCreateCommand"]
    wanted = set(re.findall(r"make (\w[\w-]*)", commands))
    assert "setup" in wanted and wanted <= make_targets()


def test_the_forwarded_ports_are_jupyterlabs_and_the_servers():
    ports = set(config()["forwardPorts"])
    jupyter = re.search(
        r"ServerApp\.port\s*=\s*(\d+)", (ROOT / "jupyter_server_config.py").read_text()
    )
    assert (
        int(jupyter.group(1)) if jupyter else 8888
    ) in ports  # JupyterLab's default port unless the config sets one
    serve_port = re.search(r"^PORT\s*\?=\s*(\d+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert int(serve_port.group(1)) in ports
    assert {str(p) for p in ports} <= set(config()["portsAttributes"])


def test_the_install_script_has_nothing_to_do_when_all_is_installed():
    listed = subprocess.run(
        [str(SCRIPT), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    absent = [entry for entry in listed if shutil.which(entry.split(":")[1]) is None]
    if absent:  # run as root it would install them: that is CI's business, not a test's
        pytest.skip(
            f"not all system packages are installed ({', '.join(absent)}): "
            ".ci/install-system-packages installs them"
        )
    done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "all installed" in done.stdout
