"""Threads without the GIL (figures/freethreaded.py), read from the committed reference data:
both builds are there, each with the Python and GIL state its servers reported; a bigger
pool computes more only without the GIL; the same work costs the free-threaded build
more CPU time on one thread. (The live measurement of the 2-users-vs-1 ratio is in
test_interpreters.py; every point's distance to its theory line in test_experiments.py.)
"""

import pytest

from conclab.base.paths import FIGURES_DIR
from conclab.figures import freethreaded
from conclab.figures.experiment import figure, read_data

DATA = read_data(FIGURES_DIR / "data" / "freethreaded.json")
POINTS = DATA["points"]


def test_each_build_is_named_with_the_gil_state_its_servers_reported():
    builds = {p["tags"]["build"]: set() for p in POINTS}
    for p in POINTS:
        builds[p["tags"]["build"]].add(
            (p["summary"].server_python[:4], p["summary"].server_gil_enabled)
        )
    assert builds[freethreaded.FREE] == {("3.13", False)}
    assert all(enabled for _, enabled in builds[freethreaded.GIL])


def test_a_pool_of_two_computes_twice_as_much_only_without_the_gil():
    x = freethreaded.speedups(POINTS)
    assert x[freethreaded.FREE] == pytest.approx(2.0, rel=0.1)
    assert x[freethreaded.GIL] == pytest.approx(1.0, rel=0.1)


def test_the_same_work_costs_the_free_threaded_build_more_cpu_on_one_thread():
    ms = freethreaded.fixed_work_ms(POINTS)
    assert ms[freethreaded.FREE] > ms[freethreaded.GIL]


def test_the_figure_says_what_it_did_not_measure_and_which_python_ran_each_panel():
    fig = figure(freethreaded.FREETHREADED, DATA)
    texts = [t.get_text() for t in fig.texts]
    titles = [ax.get_title() for ax in fig.axes]
    assert any("GIL off" in t and "Python 3.13" in t for t in titles)
    assert any("GIL on" in t for t in titles)
    assert any(t.startswith("interpreter pool (3.14") and "not measured" in t for t in texts)
    assert any(
        "server Python 3.13" in t and "GIL off" in t and "GIL on" in t for t in texts
    )  # the footer
