"""Every number the lessons state, and where it comes from.

    python -m conclab.teaching.claims        # list the numbers with no source (exit 1 if any)

The prose (notebook text cells, README.md, docs/, lab READMEs and instructor
notes, the comments of servers/nginx.conf) is split into blocks: a paragraph, a
list, one table row, a heading. Each number written with digits in a block
must be one of:

* **claimed** by a marker in the same block, usually right after its sentence::

      ... 41 ms beside the pool. <!-- claim: 41 = cpu_offload.json:points.7.probe.latency_ms.p50 -->

  The source after ``=`` is one of (docs/claims.md has the full format):

  - ``FILE.json:KEY [*S or /S] [±T or ±T%]``: a datum in figures/data/, checked
    against the number (to the digits written, unless a tolerance is given);
  - ``pkg:NAME``: a property of an installed package (``PACKAGE_FACTS``),
    read from the package, so an upgrade that changes it fails the check;
  - ``file:PATH``: a setting in a file of this repository that holds the number;
  - ``https://...``: the page it comes from; ``ref:TEXT``: a reference with no URL;
  - ``calc:EXPR``: arithmetic on numbers the paragraph states (checked);
  - ``given``: a value the sentence chooses (an example, an exercise's load);
  - ``cell``: (notebooks) a code cell of the same notebook holds it;
* **allowed**: years, notebook/lab/step/issue/PEP numbers, versions, HTTP
  status codes, list numbers (``ALLOWED``);
* inside code (a code span, a code block, a notebook code cell): code prints
  its own numbers, so they are not prose.

``check(root)`` returns one :class:`Problem` per number that fails, naming the
file, the line and the sentence.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from ..base.paths import ROOT

DATA_DIR = Path("figures") / "data"
FORMAT_DOC = "docs/claims.md"


def scope(root: Path) -> list[Path]:
    """The prose files, in a stable order."""
    root = Path(root)
    found = [
        *sorted(root.glob("notebooks/[0-9][0-9]-*.py")),
        root / "README.md",
        *sorted(root.glob("docs/**/*.md")),
        *sorted(root.glob("labs/*/README.md")),
        *sorted(root.glob("labs/*/instructor/*.md")),
        root / "servers" / "nginx.conf",
    ]
    return [p for p in found if p.is_file()]


# --- prose blocks --------------------------------------------------------------------------


@dataclass
class Block:
    path: str  # relative to the root
    line: int  # first line of the block
    lines: list[tuple[int, str]]  # (line number, text)

    @property
    def text(self) -> str:
        return "\n".join(t for _, t in self.lines)


def _markdown_blocks(path: str, lines: list[tuple[int, str]]) -> list[Block]:
    """Paragraphs, lists, table rows and headings; code blocks left out."""
    blocks: list[Block] = []
    current: list[tuple[int, str]] = []
    fence = None
    previous_blank = True

    def flush():
        if current:
            blocks.append(Block(path, current[0][0], list(current)))
            current.clear()

    for number, text in lines:
        stripped = text.strip()
        if fence:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith(("```", "~~~")):
            flush()
            fence = stripped[:3]
            continue
        if not stripped:
            flush()
            previous_blank = True
            continue
        # An indented code block: four spaces after a blank line, not a list's continuation.
        if (
            text.startswith("    ")
            and previous_blank
            and (not blocks or not _is_list(blocks[-1]))
            and not current
        ):
            previous_blank = True  # the whole indented run is code
            continue
        previous_blank = False
        if stripped.startswith("|") or stripped.startswith("#"):
            flush()
            current.append((number, text))
            flush()
            continue
        current.append((number, text))
    flush()
    return blocks


def _is_list(block: Block) -> bool:
    return bool(re.match(r"\s*([-*+]|\d+\.)\s", block.lines[0][1]))


def blocks_of(root: Path, path: Path) -> list[Block]:
    rel = path.relative_to(root).as_posix()
    raw = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".py":  # a jupytext notebook: only its markdown cells are prose
        lines, inside = [], False
        for number, text in enumerate(raw, 1):
            if text.startswith("# %%"):
                inside = text.startswith("# %% [markdown]")
                lines.append((number, ""))
                continue
            if inside:
                lines.append((number, text[2:] if text.startswith("# ") else text.lstrip("#")))
        return _markdown_blocks(rel, lines)
    if path.suffix == ".conf":  # comments only; each run of comment lines is one block
        blocks, current = [], []
        for number, text in enumerate(raw, 1):
            comment = text.split("#", 1)[1] if "#" in text else None
            if comment is not None and comment.strip():
                current.append((number, comment.strip()))
            elif current:
                blocks.append(Block(rel, current[0][0], current))
                current = []
        if current:
            blocks.append(Block(rel, current[0][0], current))
        return blocks
    return _markdown_blocks(rel, list(enumerate(raw, 1)))


# --- numbers in a block --------------------------------------------------------------------

MARKER = re.compile(r"<!--\s*claim:(.*?)-->", re.S)
NUMBER = re.compile(
    r"(?<![\w#./\\:$])(?<![A-Za-z]-)(?<!--)(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)*(?![\w.,]?\d)"
)
UNIT = (
    r"\s*(?:ms|s|µs|us|ns|seconds?|minutes?|min|req/s|rps|requests?|users?|connections?|clients?|"
    r"workers?|threads?|tasks?|calls?|MB|KB|kB|KiB|MiB|GB|bytes?|%|x|×|times|cores?|tokens?)\b"
)
PACKAGES = (
    r"Gunicorn|Uvicorn|aiohttp|FastAPI|Starlette|AnyIO|anyio|httpx|httpcore|psycopg|SQLAlchemy|NumPy|Flask|uvloop|httptools|nginx|"
    r"Python|CPython|python|python3|Jupyter|JupyterLab|jupytext|Debian|Ubuntu|Locust|k6|wrk|wrk2|"
    r"uvicorn-worker|Windows|WSL|macOS|Node|Werkzeug|pytest|ruff|Chromium|Playwright|HTTP/|TLS|IPv"
)
LABELS = (
    r"[Pp]orts?|notebooks?|Notebooks?|lab|labs|Lab|Labs|[Ss]teps?|[Ss]ections?|[Pp]arts?|[Ii]ssues?|PR|PRs|PEP|RFC|"
    r"[Ff]igures?|[Cc]hapters?|[Ll]ines?|[Ii]tems?|[Tt]asks?|[Qq]uestions?|[Ee]xercises?|[Pp]oints?|[Ss]cores?"
)
STATUS = {
    "200",
    "201",
    "202",
    "204",
    "301",
    "302",
    "304",
    "400",
    "401",
    "403",
    "404",
    "405",
    "408",
    "413",
    "414",
    "422",
    "429",
    "500",
    "502",
    "503",
    "504",
}
CHAIN = r"(?:\s*(?:,|and|or|to|-|–|/)\s*\d+(?:\.\d+)*)*\s*(?:,|and|or|to|-|–|/)?\s*$"

# What a number may be without a source: (name, test
# on the text before it, the number, the text after).
ALLOWED = (
    ("a year", lambda before, n, after: re.fullmatch(r"(19[89]|20[0-3])\d", n) is not None),
    (
        "a notebook, lab, step, issue or PEP number",
        lambda before, n, after: (
            re.search(rf"(?:\b(?:{LABELS})|#)\s*(?:\d+(?:\.\d+)*){CHAIN}", before + " 0")
            is not None
            or re.search(rf"\b(?:{LABELS})\s*$", before) is not None
        ),
    ),
    (
        "a version",
        lambda before, n, after: (
            re.search(rf"(?:\b(?:{PACKAGES})|\bv)\s*(?:\d+(?:\.\d+)*{CHAIN})?$", before) is not None
            or n.count(".") >= 2
        ),
    ),
    ("an HTTP status", lambda before, n, after: n in STATUS and not re.match(UNIT, after)),
    (
        "a list or heading number",
        lambda before, n, after: (
            (re.fullmatch(r"\s*", before) is not None and re.match(r"[.)]\s", after) is not None)
            or (
                re.fullmatch(r"\s*#+\s*", before) is not None
                and re.match(r"(?:\.\d+)*\.?\s", after) is not None
            )
        ),
    ),
    (
        "a table's numbering column",
        lambda before, n, after: (
            re.fullmatch(r"\s*\|\s*", before) is not None
            and re.match(r"\s*\|", after) is not None
            and len(n) <= 2
        ),
    ),
    (
        "a class of HTTP statuses (4xx)",
        lambda before, n, after: n in "12345" and after.startswith("xx"),
    ),
    (
        "a lesson's name (01-topic)",
        lambda before, n, after: re.fullmatch(r"0\d", n) is not None and after.startswith("-"),
    ),
)


def _strip(text: str) -> str:
    """The block's prose, with what is not prose blanked out (same length, so positions hold)."""

    def blank(m):
        return re.sub(r"[^\n]", " ", m.group())

    for pattern in (
        MARKER.pattern,
        r"<!--.*?-->",
        r"`[^`]*`",
        r"\]\([^)\s]*\)",
        r"<https?://[^>]*>",
        r"https?://\S+",
        r"\{\{[^}]*\}\}",
        r"\$[^$\n]+\$",
    ):
        text = re.sub(pattern, blank, text, flags=re.S)
    return text


def sentence_at(text: str, pos: int) -> str:
    """The sentence of ``text`` around ``pos``, on one line (a table row: the whole row)."""
    if text.lstrip().startswith("|"):
        return " ".join(MARKER.sub("", text).split())[:240]
    starts = [m.end() for m in re.finditer(r"[.!?:](?=\s+[A-Z*(`\[])|\n\s*\n|\|", text[:pos])]
    start = starts[-1] if starts else 0
    end_match = re.search(r"[.!?](?=\s|$)|\n\s*\n|\|", text[pos:])
    end = pos + end_match.end() if end_match else len(text)
    sentence = MARKER.sub("", text[start:end])
    return " ".join(sentence.replace("# ", " ").split())[:240]


def normal(number: str) -> str:
    return number.replace(",", "")


@dataclass
class Number:
    path: str
    line: int
    text: str  # as written, e.g. "1,000"
    sentence: str
    allowed: str | None  # the ALLOWED rule it meets, if any
    pos: int = 0  # where in the block


def numbers_in(block: Block) -> list[Number]:
    text = block.text
    prose = _strip(text)
    out = []
    for m in NUMBER.finditer(prose):
        before, after = prose[max(0, m.start() - 60) : m.start()], prose[m.end() : m.end() + 20]
        line_start = prose.rfind("\n", 0, m.start()) + 1
        line_before = prose[line_start : m.start()]
        allowed = next(
            (
                name
                for name, rule in ALLOWED
                if rule(
                    line_before if name.startswith(("a list", "a table")) else before,
                    m.group(),
                    after,
                )
            ),
            None,
        )
        line = block.lines[text.count("\n", 0, m.start())][0]
        out.append(
            Number(block.path, line, m.group(), sentence_at(text, m.start()), allowed, m.start())
        )
    return out


# --- markers ------------------------------------------------------------------------------


@dataclass
class Claim:
    number: str  # as written in the marker
    source: str
    path: str
    line: int
    sentence: str
    pos: int = 0  # where its marker starts in the block


def claims_in(block: Block) -> tuple[list[Claim], list[str]]:
    """The block's markers, and one message per marker it cannot read."""
    claims, errors = [], []
    text = block.text
    for m in MARKER.finditer(text):
        line = block.lines[text.count("\n", 0, m.start())][0]
        sentence = sentence_at(text, max(0, m.start() - 2))
        body = " ".join(m.group(1).replace("\n# ", " ").split())
        for part in filter(None, (p.strip() for p in body.split(";"))):
            number, eq, source = part.partition("=")
            number, source = number.strip(), source.strip()
            if not eq or not NUMBER.fullmatch(number) or not source:
                errors.append(
                    f"{block.path}:{line}: cannot read the marker part {part!r}: "
                    f"write NUMBER = SOURCE (see {FORMAT_DOC})"
                )
                continue
            claims.append(Claim(number, source, block.path, line, sentence, m.start()))
    return claims, errors


# --- sources ------------------------------------------------------------------------------


def _anyio_tokens() -> int:
    import anyio
    import anyio.to_thread

    async def tokens():
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    return int(anyio.run(tokens))


def _default(callable_, name):
    return inspect.signature(callable_).parameters[name].default


def _gunicorn(setting: str):
    from gunicorn import config

    return config.KNOWN_SETTINGS[[s.name for s in config.KNOWN_SETTINGS].index(setting)].default


def _uvicorn(name: str):
    import uvicorn

    return _default(uvicorn.Config, name)


def _hashlib_gil_minsize() -> int:
    # hashlib's C code releases the GIL for buffers of HASHLIB_GIL_MINSIZE bytes or
    # more (Modules/hashlib.h, `view.len >= HASHLIB_GIL_MINSIZE` in _hashopenssl.c).
    # The header is not installed, so the value is kept per checked CPython version:
    # a new version fails here until someone reads its source again.
    checked = {(3, 11): 2048, (3, 12): 2048, (3, 13): 2048}
    version = sys.version_info[:2]
    if version not in checked:
        raise LookupError(
            f"hashlib's threshold is not checked for Python {version[0]}.{version[1]}: read "
            f"Modules/hashlib.h of that version and add it to claims._hashlib_gil_minsize"
        )
    return checked[version]


def _asyncio_slow_callback_s() -> float:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        return loop.slow_callback_duration
    finally:
        loop.close()


# name -> (read the installed value, what it is)
PACKAGE_FACTS = {
    "anyio.thread_tokens": (_anyio_tokens, "AnyIO's default thread limiter (total_tokens)"),
    "uvicorn.backlog": (lambda: _uvicorn("backlog"), "Uvicorn's default --backlog"),
    "uvicorn.timeout_keep_alive": (
        lambda: _uvicorn("timeout_keep_alive"),
        "Uvicorn's default --timeout-keep-alive (s)",
    ),
    "gunicorn.timeout": (lambda: _gunicorn("timeout"), "Gunicorn's default --timeout (s)"),
    "gunicorn.backlog": (lambda: _gunicorn("backlog"), "Gunicorn's default --backlog"),
    "gunicorn.graceful_timeout": (
        lambda: _gunicorn("graceful_timeout"),
        "Gunicorn's default --graceful-timeout (s)",
    ),
    "gunicorn.keepalive": (lambda: _gunicorn("keepalive"), "Gunicorn's default --keep-alive (s)"),
    "gunicorn.worker_connections": (
        lambda: _gunicorn("worker_connections"),
        "Gunicorn's default --worker-connections",
    ),
    "gunicorn.limit_request_line": (
        lambda: _gunicorn("limit_request_line"),
        "Gunicorn's --limit-request-line (bytes)",
    ),
    "python.switch_interval_ms": (
        lambda: sys.getswitchinterval() * 1000,
        "CPython's switch interval (ms)",
    ),
    "python.hashlib_gil_minsize": (
        _hashlib_gil_minsize,
        "the size from which hashlib releases the GIL (bytes)",
    ),
    "python.hashlib_gil_maxkeep": (
        lambda: _hashlib_gil_minsize() - 1,
        "the largest size hashlib hashes holding the GIL",
    ),
    "asyncio.slow_callback_s": (
        _asyncio_slow_callback_s,
        "asyncio's loop.slow_callback_duration (s)",
    ),
}


def _lookup(doc, key: str, where: str):
    """Follow ``key`` into ``doc``: names, indexes, ``*`` and ``[field=value,...]`` filters."""
    parts = re.findall(r"\[[^\]]*\]|[^.\[\]]+", key)
    values = [doc]
    for part in parts:
        nxt = []
        for value in values:
            if part in ("*", "[*]"):
                nxt.extend(value.values() if isinstance(value, dict) else value)
            elif re.fullmatch(r"\[-?\d+(?:,\s*-?\d+)*\]", part) and isinstance(value, list):
                nxt.extend(value[int(i)] for i in part[1:-1].split(","))
            elif part.startswith("["):
                wanted = dict(f.split("=", 1) for f in part[1:-1].split(","))
                nxt.extend(
                    item
                    for item in value
                    if isinstance(item, dict)
                    and all(str(item.get(k.strip())) == v.strip() for k, v in wanted.items())
                )
            elif isinstance(value, list) and re.fullmatch(r"-?\d+", part):
                nxt.append(value[int(part)])
            elif isinstance(value, dict) and part in value:
                nxt.append(value[part])
            else:
                raise LookupError(f"{where}: no {part!r} in {key!r}")
        values = nxt
    if not values:
        raise LookupError(f"{where}: {key!r} matches nothing")
    return values


AGGREGATES = {
    "min": min,
    "max": max,
    "mean": statistics.fmean,
    "median": statistics.median,
    "count": len,
    "sum": sum,
}
DATA = re.compile(
    r"(?P<body>.+?)(?:\s*(?P<op>[*/])\s*(?P<scale>[\d.]+(?:e[+-]?\d+)?))?"
    r"(?:\s*±\s*(?P<tol>[\d.]+)(?P<pct>%)?)?"
)


def data_value(root: Path, source: str) -> tuple[float, float | None]:
    """The datum a source names, scaled, and its tolerance (None: the digits written)."""
    ratio = re.fullmatch(
        r"ratio\((?P<a>.+?),\s*(?P<b>\w*\(?[\w.-]+\.json:.+)\)(?:\s*±\s*(?P<tol>[\d.]+)(?P<pct>%)?)?",
        source,
    )
    if ratio:  # ratio(A, B): one datum over another
        a, b = data_value(root, ratio["a"])[0], data_value(root, ratio["b"])[0]
        value = a / b
        tol = None
        if ratio["tol"]:
            tol = float(ratio["tol"]) / 100 * abs(value) if ratio["pct"] else float(ratio["tol"])
        return value, tol
    m = DATA.fullmatch(source)
    agg = re.fullmatch(r"(\w+)\((.+)\)", m["body"])
    ref = agg.group(2) if agg else m["body"]
    name, colon, key = ref.partition(":")
    if not colon or not name.endswith(".json"):
        raise LookupError(f"cannot read the data source {source!r} (see {FORMAT_DOC})")
    path = Path(root) / DATA_DIR / name
    if not path.is_file():
        raise LookupError(f"{DATA_DIR / name} does not exist")
    values = _lookup(json.loads(path.read_text()), key.strip(), name)
    if agg:
        if agg.group(1) not in AGGREGATES:
            raise LookupError(f"unknown aggregate {agg.group(1)!r}: one of {', '.join(AGGREGATES)}")
        fn = AGGREGATES[agg.group(1)]
        value = fn(values) if fn is len else fn([float(v) for v in values])
    elif len(values) != 1:
        raise LookupError(f"{ref} gives {len(values)} values: pick one or use min(...)/max(...)")
    else:
        value = values[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LookupError(f"{ref} is {value!r}, not a number")
    value = float(value)
    if m["op"]:
        value = value * float(m["scale"]) if m["op"] == "*" else value / float(m["scale"])
    tol = None
    if m["tol"]:
        tol = float(m["tol"]) / 100 * abs(value) if m["pct"] else float(m["tol"])
    return value, tol


def matches(written: str, value: float, tol: float | None) -> bool:
    """Is ``value`` what ``written`` says, to its digits
    (half a unit of the last one) or within ``tol``?"""
    n = float(normal(written))
    if tol is None:
        decimals = len(normal(written).split(".")[1]) if "." in written else 0
        tol = 0.5 * 10**-decimals
    return math.isclose(n, value, abs_tol=tol + 1e-9)


def _code_cells(path: Path) -> str | None:
    """The code cells of a jupytext notebook, as one text (None: not a notebook)."""
    if path.suffix != ".py" or path.parent.name != "notebooks":
        return None
    out, code = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            code = not line.startswith("# %% [markdown]")
            continue
        if code:
            out.append(line)
    return "\n".join(out)


def _calc(expression: str) -> float:
    """The value of an arithmetic expression: numbers, + - * / ( ), min and max."""
    import ast
    import operator

    ops = {
        ast.Add: operator.add,
        ast.Sub: operator.sub,
        ast.Mult: operator.mul,
        ast.Div: operator.truediv,
    }

    def ev(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("min", "max")
        ):
            return {"min": min, "max": max}[node.func.id](ev(a) for a in node.args)
        raise ValueError(f"calc: only numbers, + - * / ( ), min and max, not {ast.unparse(node)!r}")

    try:
        return float(
            ev(ast.parse(re.sub(r"(?<=\d),(?=\d{3})", "", expression.strip()), mode="eval").body)
        )
    except SyntaxError:
        raise ValueError(f"calc: cannot read {expression.strip()!r}") from None


@dataclass
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def check_claim(root: Path, claim: Claim) -> str | None:
    """None if the claim holds, else what is wrong."""
    source = claim.source
    try:
        if source.startswith(("https://", "http://")):
            return (
                None
                if re.fullmatch(r"https?://[\w.-]+\.\w+\S*", source)
                else f"{source!r} is not a URL"
            )
        if source.startswith("calc:"):
            expression, _, tolerance = source[5:].partition("±")
            # A datum may stand in the expression: FILE.json:KEY, a key without spaces or operators.
            expression = re.sub(
                r"[\w-]+\.json:[\w.\[\]=]+",
                lambda m: repr(data_value(root, m.group())[0]),
                expression,
            )
            value = _calc(expression)
            tol = None
            if tolerance.strip():
                tol = float(tolerance.strip().rstrip("%")) / (
                    100 / abs(value) if tolerance.strip().endswith("%") else 1
                )
            if not matches(claim.number, value, tol):
                return f"{source[5:].strip()} = {value:.6g}, not {claim.number}"
            return None
        if source == "cell":  # a notebook's own code cell sets it
            code = _code_cells(Path(root) / claim.path)
            if code is None:
                return "cell: only a notebook's text can cite its own code cells"
            if not re.search(
                rf"(?<![\w.]){re.escape(normal(claim.number))}(?:\.0+)?(?![\w.]?\d)",
                re.sub(r"(?<=\d)[_,](?=\d{3})", "", code),
            ):
                return f"no code cell of {claim.path} holds {claim.number} any more: update"
            return None
        if (
            source == "given"
        ):  # a value the sentence chooses: an example, a load, an exercise's parameter
            return None
        if source.startswith("ref:"):
            return None if source[4:].strip() else "ref: needs the reference's name"
        if source.startswith("file:"):
            path = Path(root) / source[5:].strip()
            if source[5:].strip() == claim.path:
                return "file: must name another file (the prose itself always holds the number)"
            if not path.is_file():
                return f"{source[5:].strip()} does not exist"
            if not re.search(
                rf"(?<![\w.]){re.escape(normal(claim.number))}(?:\.0+)?(?![\w.]?\d)",
                re.sub(r"(?<=\d)[_,](?=\d{3})", "", path.read_text(errors="replace")),
            ):
                return f"{source[5:].strip()} no longer holds {claim.number}: update"
            return None
        if source.startswith("pkg:"):
            name = source[4:].strip()
            if name not in PACKAGE_FACTS:
                return f"unknown package fact {name!r}: one of {', '.join(PACKAGE_FACTS)}"
            read, what = PACKAGE_FACTS[name]
            value = read()
            if not matches(claim.number, float(value), None):
                return f"the installed packages say {what} is {value:g}, not {claim.number}: update"
            return None
        value, tol = data_value(root, source)
        if not matches(claim.number, value, tol):
            return f"the committed data say {source} = {value:.6g}, not {claim.number}: update"
        return None
    except (LookupError, ValueError, ImportError) as err:
        return str(err)


def check(root: Path = ROOT, files: list[Path] | None = None) -> list[Problem]:
    """Every number in the prose under ``root``: one Problem per number with no good source."""
    root = Path(root)
    problems: list[Problem] = []
    for path in files or scope(root):
        for block in blocks_of(root, path):
            claims, errors = claims_in(block)
            problems += [
                Problem(block.path, int(e.split(":")[1]), e.split(": ", 1)[1]) for e in errors
            ]
            numbers = numbers_in(block)
            written = {normal(n.text) for n in numbers}
            claimed = set()
            for claim in claims:
                if normal(claim.number) not in written:
                    problems.append(
                        Problem(
                            claim.path,
                            claim.line,
                            f"a marker claims {claim.number}, which its "
                            f'paragraph does not state: "{claim.sentence}"',
                        )
                    )
                    continue
                claimed.add(normal(claim.number))
                wrong = check_claim(root, claim)
                if wrong:
                    same = [n for n in numbers if normal(n.text) == normal(claim.number)]
                    before = [n for n in same if n.pos < claim.pos]
                    sentence = (before[-1] if before else same[0]).sentence
                    problems.append(Problem(claim.path, claim.line, f'{wrong}: "{sentence}"'))
            for n in numbers:
                if n.allowed is None and normal(n.text) not in claimed:
                    problems.append(
                        Problem(
                            n.path,
                            n.line,
                            f'{n.text} has no source: "{n.sentence}" '
                            f"(add <!-- claim: {n.text} = SOURCE -->, "
                            f"see {FORMAT_DOC})",
                        )
                    )
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files = [Path(a).resolve() for a in args] or None
    problems = check(ROOT, files)
    for problem in problems:
        print(problem)
    print(
        f"{len(problems)} number{'s' if len(problems) != 1 else ''} without a good source",
        file=sys.stderr,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
