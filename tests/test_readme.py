"""The documentation's code runs as written."""

import re

import pytest

from tests.support import REPO, run_cli


def readme_block(heading: str, page: str = "docs/using-a-model.md") -> str:
    """The first ```python block under ``heading`` in a documentation page."""
    text = (REPO / page).read_text()
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.no_data
def test_using_the_head_in_your_own_code_runs_offline(tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(readme_block("## Using the head in your own code"))
    result = run_cli(str(script), env={"HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "{'logits': (2, 2), 'similarities': (2, 20), 'attention': (2, 7), 'pooled': (2, 384)}" in result.stdout


def _anchors(page) -> set[str]:
    """GitHub's anchors of a Markdown page's headings."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.no_data
def test_every_link_of_the_readme_and_docs_reaches_a_committed_file_and_heading():
    # A figure is only as good as the record it points to: a link to a moved or renamed record fails.
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks" / "README.md"]
    pages += sorted((REPO / "experiments" / "results").glob("*/README.md"))
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, broken
