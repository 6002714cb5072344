"""The documentation against the code: every relative link resolves, docs/configuration.md lists
every variable of variables.py with its default, every known failure line of the CLI is in
docs/operations.md's troubleshooting, and the README stays short. No database, no model."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import psycopg
import pytest

from jobping_pipeline import cli
from jobping_pipeline.cli import describe_fault
from jobping_pipeline.faults import InfrastructureFault
from jobping_pipeline.models.openai_protocol import ApiRequestRefused, ApiUnavailable
from jobping_pipeline.store import DatabaseUnavailable
from jobping_pipeline.variables import SETTINGS

from .helpers import PROJECT_DIR

README = PROJECT_DIR / "README.md"
DOCS = PROJECT_DIR / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 250
# The pages the README promises, one per question an operator has.
REQUIRED_PAGES = ("operations.md", "configuration.md", "performance.md", "design.md", "deploy.md")
TROUBLESHOOTING = "## Troubleshooting by symptom"
SOURCE_FILES = sorted((PROJECT_DIR / "jobping_pipeline").rglob("*.py"))

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`[^`\n]*`")
VARIABLE = re.compile(r"\bJOBPING_[A-Z0-9_]*[A-Z0-9]")
CELL_SPLIT = re.compile(r"(?<!\\)\|")


def without_code(text: str) -> str:
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text without markup, lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"#{1,6} +(.+?) *#*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def tables(text: str):
    """Each markdown table as (header cells, rows of cells), code blocks left out."""
    lines = FENCE.sub("", text).splitlines()
    index = 0
    while index < len(lines) - 1:
        if lines[index].startswith("|") and re.match(r"^\|[\s:|-]+\|$", lines[index + 1]):
            header = cells(lines[index])
            rows = []
            index += 2
            while index < len(lines) and lines[index].startswith("|"):
                rows.append(cells(lines[index]))
                index += 1
            yield header, rows
        else:
            index += 1


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in CELL_SPLIT.split(line.strip())[1:-1]]


def troubleshooting() -> str:
    text = (DOCS / "operations.md").read_text()
    start = text.index(TROUBLESHOOTING)
    end = text.find("\n## ", start + len(TROUBLESHOOTING))
    return text[start : end if end != -1 else len(text)]


def source_text() -> str:
    return "\n".join(path.read_text() for path in SOURCE_FILES)


def test_the_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_promised_pages_exist():
    for name in REQUIRED_PAGES:
        assert (DOCS / name).is_file(), f"docs/{name} is missing"


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(PROJECT_DIR)) for page in PAGES])
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(without_code(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(PROJECT_DIR)}")
    assert not broken, f"{page.relative_to(PROJECT_DIR)}: " + "; ".join(broken)


def documented_defaults() -> dict[str, str]:
    """Variable -> its Default cell, from every table of configuration.md with a Default column."""
    found = {}
    for header, rows in tables((DOCS / "configuration.md").read_text()):
        if "Default" not in header:
            continue
        for row in rows:
            name = row[0].strip("`")
            assert name not in found, f"configuration.md lists {name} twice"
            found[name] = row[header.index("Default")]
    return found


def check_default(name: str, default: str | None, cell: str) -> str | None:
    """None when the cell states the variable's default: `default` literally, or 'unset' first."""
    if default is None:
        return None if cell.startswith("unset") else f"{name}: default is unset, the page says {cell!r}"
    return None if cell == f"`{default}`" else f"{name}: default is `{default}`, the page says {cell!r}"


def test_configuration_lists_every_setting_with_its_default():
    documented = documented_defaults()
    problems = [
        f"{setting.name}: missing from configuration.md" if setting.name not in documented
        else check_default(setting.name, setting.default, documented[setting.name])
        for setting in SETTINGS
    ]
    assert not [problem for problem in problems if problem], problems
    assert "OPENAI_API_KEY" in documented


def test_every_variable_the_docs_name_is_a_setting():
    names = {setting.name for setting in SETTINGS}
    unknown = {
        f"{page.relative_to(PROJECT_DIR)}: {name}"
        for page in PAGES
        for name in VARIABLE.findall(page.read_text())
        if name not in names
    }
    assert not unknown, sorted(unknown)


def test_other_settings_tables_agree_on_defaults():
    """The README's short table (and any other with a Default column) says what variables.py says."""
    settings = {setting.name: setting.default for setting in SETTINGS}
    problems = []
    for page in PAGES:
        if page.name == "configuration.md":  # the test above
            continue
        for header, rows in tables(page.read_text()):
            if "Default" not in header:
                continue
            for row in rows:
                name = row[0].strip("`")
                if name in settings:
                    problem = check_default(name, settings[name], row[header.index("Default")])
                    if problem:
                        problems.append(f"{page.name}: {problem}")
    assert not problems, problems


def test_the_readme_lists_every_exit_code():
    codes = {
        value for name, value in vars(cli).items() if name.startswith("EXIT_") and isinstance(value, int)
    }
    rows = {
        row[0]
        for header, table_rows in tables(README.read_text())
        if header and header[0] == "code"
        for row in table_rows
    }
    assert {str(code) for code in codes | {0}} <= rows, rows


# Representative errors of every kind describe_fault knows (as in test_cli.py), and the exit code.
FAULTS = [
    (DatabaseUnavailable("cannot connect to JOBPING_DATABASE_URL=postgresql://u:***@db/jobs: refused"), 2),
    (psycopg.OperationalError("server closed the connection unexpectedly"), 3),
    (psycopg.InterfaceError("the connection is closed"), 3),
    (psycopg.errors.InsufficientPrivilege("permission denied for table jobs"), 4),
    (ApiUnavailable("text-embedding-3-small: the embeddings API failed 7 attempts; last: HTTP 503"), 3),
    (ApiRequestRefused("HTTP 401: Incorrect API key", 401), 2),
    (ApiRequestRefused("HTTP 403: Forbidden", 403), 2),
    (ApiRequestRefused("HTTP 404: The model does not exist", 404), 2),
    (InfrastructureFault("the model failed for a reason no text is to blame for: CUDA out of memory"), 3),
]


@pytest.mark.parametrize(("error", "code"), FAULTS, ids=[type(fault[0]).__name__ for fault in FAULTS])
def test_every_fault_line_is_in_troubleshooting_with_its_exit_code(error, code):
    message, exit_code = describe_fault(error)
    assert exit_code == code
    lead = re.split(r"[:=;]", message)[0].strip()
    assert len(lead) >= 15, message
    assert lead in source_text(), f"{lead!r} is not in the code: pick a representative error the code raises"
    section = troubleshooting()
    rows = [line for line in section.splitlines() if f"`{lead}" in line]
    assert rows, f"troubleshooting does not quote {lead!r} ({message})"
    assert any(f"| {code} |" in row for row in rows), f"troubleshooting gives {lead!r} another exit code than {code}"


# The exceptions whose message the CLI prints as its one line (or a chunk's failure inside it).
RAISED_AS_A_LINE = {
    "ConfigError", "ConfigurationChanged", "DatabaseUnavailable", "ApiUnavailable", "InfrastructureFault",
    "EmbeddingFailed",
}
CLI_PREFIX = "jobping-pipeline:"


def fixed_parts(node: ast.AST) -> list[str]:
    """The literal text of a message: the constant parts of an f-string or a concatenation."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [value.value for value in node.values if isinstance(value, ast.Constant)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return fixed_parts(node.left) + fixed_parts(node.right)
    return []


def candidates(parts: list[str]) -> list[str]:
    """Stable pieces of a message to look for: each literal part, without the CLI's prefix, cut at
    its first ':' or ';' when what precedes it is long enough, at most 40 characters; not a bare
    ``NAME=`` (any message about that variable would match it) unless nothing else is left."""
    pieces = []
    for part in parts:
        text = part.strip().removeprefix(CLI_PREFIX).strip(" :;,.(")
        head = re.split(r"[:;]", text)[0]
        text = head if len(head) >= 12 else text
        pieces.append(text[:40])
    specific = [piece for piece in pieces if len(piece) >= 12 and not re.fullmatch(r"[\w.]+=", piece)]
    return specific or [piece for piece in pieces if len(piece) >= 8]


def failure_messages() -> list[tuple[str, list[str]]]:
    """Every message the code raises as a known failure, or prints on stderr: where, and its pieces."""
    found = []
    for path in SOURCE_FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Name)):
                continue
            to_stderr = node.func.id == "print" and any(keyword.arg == "file" for keyword in node.keywords)
            if node.func.id in RAISED_AS_A_LINE or to_stderr:
                pieces = candidates(fixed_parts(node.args[0]))
                if pieces:  # the one-line wrappers print another message: nothing of their own
                    found.append((f"{path.relative_to(PROJECT_DIR)}:{node.lineno}", pieces))
    return found


def test_every_failure_message_in_the_code_is_in_troubleshooting():
    messages = failure_messages()
    assert len(messages) >= 40, "the scan of the code found too few messages: is it still looking in the right place?"
    section = troubleshooting()
    missing = [f"{where}: {pieces}" for where, pieces in messages if not any(piece in section for piece in pieces)]
    assert not missing, "not in docs/operations.md's troubleshooting:\n" + "\n".join(missing)


# Known failures that are not one of the exceptions above: errors recorded on a job, the sensor's
# and the runs' log lines, tracebacks with a message. Each must be in the code and in the docs.
DOCUMENTED_ELSEWHERE_IN_THE_CODE = [
    "every failed chunk failed for the infrastructure",
    "stopped by a signal",
    "is not in the registry; run",
    "the pipeline is not set up: run",
    "its chunks are requested again",
    "cannot SET session_replication_role: triggers on",
    "encoding ahead stopped",
    "indexes the embedding column; every",
    "Run again with --yes to do it",
    "no exact backend could run the model here",
    "no backend could run the model here",
    "no text to embed: every text column is empty or NULL",
    "does not let role",
    "hides this row from role",
    "the UPDATE reached no row although the job exists",
    "write failed: permission denied",
    "text changed behind the triggers",
    "(another row)",
    "vector not written by the pipeline",
    "vector is not the model's vector of its text",
    "no vector although the state records one",
    "vector written outside the pipeline (seen by the capture trigger)",
    "the conversion computes other vectors than the model",
]


@pytest.mark.parametrize("fragment", DOCUMENTED_ELSEWHERE_IN_THE_CODE)
def test_other_known_failures_are_in_the_code_and_in_troubleshooting(fragment):
    assert fragment in source_text(), f"{fragment!r} is no longer in jobping_pipeline/: update this list and the docs"
    assert fragment in troubleshooting(), f"{fragment!r} is not in docs/operations.md's troubleshooting"
