"""The one report writer also writes a self-contained HTML page with the figures embedded."""
from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nnmend.report import Report, html_table, markdown_table, report_html  # noqa: E402


class _Collect(HTMLParser):
    """Every tag with its attributes, and whether the tags close as they open."""

    def __init__(self):
        super().__init__()
        self.tags, self.stack, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in {"meta", "img", "br", "hr", "link"}:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"</{tag}> closes nothing"

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Collect:
    p = _Collect()
    p.feed(page)
    p.close()
    assert p.stack == [], p.stack
    return p


def test_report_writes_html_with_embedded_figures(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.bar(["fc1", "fc2"], [0.1, 0.7])
    fig.savefig(tmp_path / "mad.png")
    plt.close(fig)
    rep = Report("demo <run> & co", seed=3, columns=["scenario", "acc"])
    rep.add_row({"scenario": "zero <fc2>", "acc": 0.97912})
    rep.add_figure("mad.png", "MAD per layer")
    rep.add_figure("absent.png", "never drawn")
    rep.notes.append("a note")
    rep.extra["diagnosis"] = {"localized": "fc2"}
    rep.write(tmp_path)
    assert {"report.json", "report.md", "report.html"} <= {p.name for p in tmp_path.iterdir()}
    page = (tmp_path / "report.html").read_text()
    parsed = _parse(page)
    imgs = [a for t, a in parsed.tags if t == "img"]
    assert len(imgs) == 1 and imgs[0]["src"].startswith("data:image/png;base64,")
    assert base64.b64decode(imgs[0]["src"].split(",", 1)[1]) == (tmp_path / "mad.png").read_bytes()
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)          # nothing outside the page
    text = "".join(parsed.text)
    assert "zero <fc2>" in text and "0.9791" in text and "demo <run> & co" in text   # escaped, same format as .md
    assert "absent.png not found" in text and "a note" in text and '"localized": "fc2"' in text
    assert "0.9791" in (tmp_path / "report.md").read_text()


def test_html_table_matches_markdown_cells():
    rows = [{"a": 1, "b": 0.123456, "c": None}, {"a": "x|y", "b": float("nan"), "c": 12.5}]
    md_cells = [line.strip("| ").split(" | ") for line in markdown_table(rows).splitlines()[2:]]
    parsed = _parse(html_table(rows))
    html_cells = "".join(parsed.text).split("\n")
    flat = [c for row in md_cells for c in row]
    assert all(cell in "".join(html_cells) for cell in flat)
    assert sum(1 for t, _ in parsed.tags if t == "tr") == 3


def test_report_html_of_a_command_json():
    page = report_html({"method": "guard", "seconds": 1.5, "evaluation": {"before": {"accuracy": 0.5}},
                        "boxes": [{"box": 0, "proved": True}, {"box": 1, "proved": False}]}, "nnmend repair")
    text = "".join(_parse(page).text)
    for needle in ("guard", "1.5000", "evaluation", "before", "0.5000", "boxes", "True", "False"):
        assert needle in text, needle


def test_repair_command_writes_its_report_page(tmp_path, monkeypatch, capsys):
    from nnmend.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["examples", "--out", ".", "acasxu_2_1.nnet", "prop_2.vnnlib"]) == 0
    assert main(["repair", "acasxu_2_1.nnet", "--method", "guard", "--external", "none", "--property", "prop_2.vnnlib",
                 "--out", "guarded.pt"]) == 0
    assert "guarded.html" in capsys.readouterr().out
    page = (tmp_path / "guarded.html").read_text()
    text = "".join(_parse(page).text)
    assert "nnmend repair --method guard: guarded.pt" in text and "guard" in text
