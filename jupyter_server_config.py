# JupyterLab for class: `make jupyter` and the browser tests pass this file
# with --config, so the instructor's screen and the tests see the same lab.
# Reference: https://jupyter-server.readthedocs.io/en/latest/other/full-config.html
c = get_config()  # noqa: F821 - provided by Jupyter when it loads this file

# Loopback only: the lab's servers and measurements are not for the network.
c.ServerApp.ip = "127.0.0.1"

# Show students only what they open. Each lesson is a jupytext pair
# (NN-topic.ipynb + NN-topic.py): the .py is the reviewed text twin that
# jupytext keeps in sync when the notebook is saved. Hiding it from the file
# browser only stops it being listed: it is still read and written as the
# notebook's pair. The rest are jupyter_server's own defaults.
c.ContentsManager.hide_globs = [
    "*.py", "__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*.so", "*.dylib", "*~",
]

# Nothing fetched from the internet while teaching: no news feed, no update check.
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
