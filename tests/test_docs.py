"""Every Python snippet in docs/*.md runs, and each PyTorch snippet agrees with its staticgrad twin.

A page is cut into sections at its ``##`` headings. Fenced blocks whose info string is
``python staticgrad`` (or plain ``python``) are staticgrad blocks; ``python torch`` blocks are
PyTorch blocks; any other fence (``text``, ``bash``...) is not run. Each block runs once, in a
fresh namespace, compiled under the name ``<page>.md:<line>`` where ``<line>`` is the Markdown
line of its opening fence, so line ``k`` of a traceback is Markdown line ``<line> + k``.

A page with at least one PyTorch block is a comparison page: each of its ``##`` sections must hold
both kinds of block, every block must bind ``answer`` (a number, a list of numbers or an array),
and the last PyTorch block's ``answer`` must equal (``numpy.allclose``, rtol 1e-5) the last
staticgrad block's, unless the section contains the comment ``<!-- docs-test: answers differ
-->``. staticgrad blocks always run; PyTorch blocks and the comparison are skipped when
``torch`` is not installed.
"""

from __future__ import annotations

import linecache
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))

KINDS = {"python": "staticgrad", "python staticgrad": "staticgrad", "python torch": "torch"}
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
DIFFER = "<!-- docs-test: answers differ -->"
# torch's anomaly mode warns on entry and prints the forward traceback of the failing node
pytestmark = [pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled"),
              pytest.mark.filterwarnings("ignore:Error detected in")]


@dataclass
class Block:
    page: Path
    line: int        # Markdown line (1-based) of the opening fence
    kind: str        # "staticgrad" or "torch"
    source: str

    @property
    def filename(self) -> str:
        return f"{self.page.name}:{self.line}"

    def __repr__(self) -> str:
        return f"<{self.kind} block at {self.filename}>"


@dataclass
class Section:
    page: Path
    title: str
    line: int
    comparison: bool = False          # the page has PyTorch blocks
    answers_differ: bool = False
    blocks: list = field(default_factory=list)
    id: str = ""

    def __repr__(self) -> str:
        return f"<section {self.title!r} at {self.page.name}:{self.line}>"

    def of(self, kind: str) -> list:
        return [b for b in self.blocks if b.kind == kind]


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "-", title.lower()).strip("-") or "section"


def github_anchor(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def scan(page: Path):
    """``(kind, line, payload)`` for each heading (``"heading"``, its text) and each fenced
    block (``"fence"``, ``(info string, code)``) of a page; other lines as ``"text"``."""
    lines = page.read_text(encoding="utf-8").splitlines()
    fence = None                      # (marker, info, start line, indent, code lines)
    for number, text in enumerate(lines, start=1):
        match = FENCE.match(text)
        if fence is not None:
            marker, info, start, indent, code = fence
            if match and match["fence"][0] == marker[0] and len(match["fence"]) >= len(marker) \
                    and not match["info"]:
                source = "\n".join(c[indent:] if c[:indent].isspace() else c for c in code)
                yield "fence", start, (info, source + "\n")
                fence = None
            else:
                code.append(text)
        elif match:
            info = " ".join(match["info"].split())
            fence = (match["fence"], info, number, len(match["indent"]), [])
        elif re.match(r"#{1,6} ", text):
            yield "heading", number, text
        else:
            yield "text", number, text
    assert fence is None, f"{page.name}:{fence[2]}: a code fence is never closed"


def parse(page: Path) -> list:
    """The ``##`` sections of a page (text before the first one is a section named after the
    page's title), each with its runnable blocks."""
    sections = [Section(page, page.stem, 1)]
    for kind, number, payload in scan(page):
        if kind == "fence":
            info, source = payload
            if info in KINDS:
                sections[-1].blocks.append(Block(page, number, KINDS[info], source))
        elif kind == "heading" and payload.startswith("## "):
            sections.append(Section(page, payload[3:].strip(), number))
        elif kind == "heading" and payload.startswith("# ") and len(sections) == 1:
            sections[0].title = payload[2:].strip()
        elif kind == "text" and DIFFER in payload:
            sections[-1].answers_differ = True
    comparison = any(b.kind == "torch" for s in sections for b in s.blocks)
    for s in sections:
        s.comparison = comparison
    # the text before the first heading only counts if it holds code
    return [s for k, s in enumerate(sections) if k > 0 or s.blocks]


def collect() -> list:
    sections = [s for page in PAGES for s in parse(page)]
    slugs = [slugify(s.title) for s in sections]
    for s, slug in zip(sections, slugs):
        s.id = slug if slugs.count(slug) == 1 else f"{s.page.stem}-{slug}"
    return sections


SECTIONS = collect()
COMPARED = [s for s in SECTIONS if s.comparison]


def with_kind(kind: str) -> list:
    return [pytest.param(s, id=s.id) for s in SECTIONS if s.of(kind)]


@pytest.fixture(scope="module")
def run_block():
    """``run_block(block)``: the namespace the block leaves behind, executing it only once per
    module (several tests read each answer); a block that raised raises again."""
    done: dict = {}

    def run(block: Block) -> dict:
        key = (block.page, block.line)
        if key not in done:
            namespace = {"__name__": "__main__"}
            # tracebacks show the Markdown source of the failing line
            linecache.cache[block.filename] = (len(block.source), None,
                                               block.source.splitlines(True), block.filename)
            try:
                exec(compile(block.source, block.filename, "exec"), namespace)
            except Exception as err:  # kept, and raised again for every test that asks
                done[key] = (err, err.__traceback__)
            else:
                done[key] = namespace
        result = done[key]
        if isinstance(result, tuple):
            err, traceback = result
            raise err.with_traceback(traceback)   # without the frames of earlier raises
        return result

    return run


def answer_of(block: Block, namespace: dict) -> np.ndarray:
    assert "answer" in namespace, f"the block at {block.filename} does not bind `answer`"
    try:
        value = np.asarray(namespace["answer"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise AssertionError(f"`answer` of the block at {block.filename} is not numbers "
                             f"(a float, a list of floats or an array): "
                             f"{namespace['answer']!r}") from err
    return value


def run_kind(section: Section, kind: str, run_block) -> np.ndarray | None:
    """Run the section's blocks of one kind in order; the last block's answer (checked on
    comparison pages, where every block must bind one)."""
    answer = None
    for block in section.of(kind):
        namespace = run_block(block)
        if section.comparison:
            answer = answer_of(block, namespace)
    return answer


def test_docs_exist():
    assert PAGES, f"no Markdown pages in {DOCS}"
    assert COMPARED, "no page compares PyTorch with staticgrad"


@pytest.mark.parametrize("section", [pytest.param(s, id=s.id) for s in COMPARED])
def test_section_has_both_blocks(section: Section):
    where = f"{section.page.name}:{section.line} ({section.title!r})"
    assert section.of("torch"), f"section {where} has no ```python torch block"
    assert section.of("staticgrad"), f"section {where} has no ```python staticgrad block"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_contents_links_resolve(page: Path):
    anchors = {github_anchor(text.lstrip("#")) for kind, _, text in scan(page)
               if kind == "heading"}
    prose = [re.sub(r"(`+).+?\1", "", text) for kind, _, text in scan(page) if kind != "fence"]
    missing = [a for text in prose for a in re.findall(r"\]\(#([^)]+)\)", text)
               if a not in anchors]
    assert not missing, f"{page.name}: links to missing headings {missing}"


@pytest.mark.parametrize("section", with_kind("staticgrad"))
def test_staticgrad_blocks_run(section: Section, run_block):
    run_kind(section, "staticgrad", run_block)


@pytest.mark.parametrize("section", with_kind("torch"))
def test_torch_blocks_run(section: Section, run_block):
    pytest.importorskip("torch")
    run_kind(section, "torch", run_block)


@pytest.mark.parametrize("section", [pytest.param(s, id=s.id) for s in COMPARED
                                     if s.of("torch") and s.of("staticgrad")
                                     and not s.answers_differ])
def test_answers_agree(section: Section, run_block):
    pytest.importorskip("torch")
    expected = run_kind(section, "torch", run_block)
    actual = run_kind(section, "staticgrad", run_block)
    assert expected.shape == actual.shape, (
        f"{section.title!r}: torch's answer has shape {expected.shape}, staticgrad's "
        f"{actual.shape}\n torch: {expected.tolist()}\n staticgrad: {actual.tolist()}")
    assert np.allclose(actual, expected, rtol=1e-5), (
        f"{section.title!r}: the answers differ\n torch: {expected.tolist()}\n"
        f" staticgrad: {actual.tolist()}")
