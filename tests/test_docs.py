"""The documentation ships with the code: no file of the repository points at notes outside it,
and every relative Markdown link in README.md and docs/ leads to a file (and heading) that exists."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Spelled in pieces so that this file does not cite them itself.
OUTSIDE_NOTES = ("DESIGN" + ".md", "../" + "shared")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def repository_files() -> list[pathlib.Path]:
    """Tracked files and files git would add (not ignored), that exist in the working tree."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the repository's file list is unknown")
    paths = [ROOT / name for name in out.decode().split("\0") if name]
    return [p for p in paths if p.is_file()]


def markdown_files() -> list[pathlib.Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def heading_anchors(path: pathlib.Path) -> set[str]:
    """GitHub's anchors of the headings of a Markdown file: lower case, punctuation dropped,
    spaces to hyphens, a repeated heading numbered -1, -2, ..."""
    anchors: set[str] = set()
    for line in _FENCE.sub("", path.read_text()).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def broken_links(path: pathlib.Path) -> list[str]:
    """The relative links of one Markdown file whose target file, or heading, is missing."""
    broken = []
    for target in _LINK.findall(_FENCE.sub("", path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no file {linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked})")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {linked.relative_to(ROOT)})")
    return broken


def test_no_file_cites_notes_outside_the_repository():
    citing = []
    for path in repository_files():
        text = path.read_bytes()
        citing += [f"{path.relative_to(ROOT)}: {note}" for note in OUTSIDE_NOTES if note.encode() in text]
    assert citing == []


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_markdown_links_resolve(path):
    assert broken_links(path) == []


def test_the_link_check_sees_missing_files_and_headings(tmp_path, monkeypatch):
    tmp_path = tmp_path.resolve()
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# A title\n\n## Two `words`\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#two-words) [ok](#here) [web](https://x.org/y.md) [gone](c.md) "
                    "[bad](a.md#nope)\n\n## Here\n\n```\n[in code](d.md)\n```\n")
    assert broken_links(page) == ["c.md (no file c.md)", "a.md#nope (no heading #nope in a.md)"]
