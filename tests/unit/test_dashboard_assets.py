"""The dashboard's vendored browser code is what its table says (issue 16).

Each file is a library's own published build, unmodified (its SHA-256 is
pinned here: an upgrade changes this table and ``vendor/README.md``
together), with its licence beside it; and the package ships every file
(``tickbase.dashboard.static_dir()``, what the gateway serves).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tickbase.dashboard import PAGES, is_dashboard_path, static_dir

VENDOR = static_dir() / "vendor"
PINNED = {
    # file: (npm package@version, sha256 of the published file, licence files)
    "htm-preact/standalone.module.js": (
        "htm@3.1.1",
        "72284e8e9079c87817145df1110f74e8a2aa040b2fc384922e18dfcb46fc1fd7",
        ("LICENSE", "LICENSE-preact"),
    ),
    "lightweight-charts/lightweight-charts.standalone.production.mjs": (
        "lightweight-charts@5.2.1",
        "1bb1ee79f9d4dd17261b53d930f7a8995748276f80e7ba0e24412b5068062f5f",
        ("LICENSE",),
    ),
    "dagre/dagre.esm.js": (
        "@dagrejs/dagre@3.1.3",
        "b0ddaf4af1417bec9bd89373a3a3987f081727d6cc6d95fc40dbf85a19bdf3b0",
        ("LICENSE",),
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_each_vendored_file_is_pinned_and_licensed(name: str) -> None:
    package, digest, licences = PINNED[name]
    path = VENDOR / name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{name} is not {package}"
    for licence in licences:
        text = (path.parent / licence).read_text()
        assert "License" in text or "LICENSE" in text or "Permission is hereby granted" in text
    readme = (VENDOR / "README.md").read_text()
    assert package.rpartition("@")[2] in readme and path.parent.name in readme


def test_nothing_is_vendored_without_an_entry() -> None:
    scripts = {str(p.relative_to(VENDOR)) for p in VENDOR.rglob("*") if p.suffix in (".js", ".mjs")}
    assert scripts == set(PINNED)


def test_the_shell_loads_only_our_own_modules() -> None:
    shell = (static_dir() / "index.html").read_text()
    assert "http://" not in shell and "https://" not in shell  # no CDN
    assert '<script type="module" src="/ui/app.js">' in shell
    for module in static_dir().rglob("*.js"):
        if "vendor" in module.parts:
            continue
        text = module.read_text()
        assert "https://" not in text and "http://" not in text, module
        assert "innerHTML" not in text and "eval(" not in text, module


@pytest.mark.parametrize(
    ("path", "public"),
    [
        ("/", True),
        ("/tasks", True),
        ("/tasks/12", True),
        ("/runs/3", True),
        ("/schedules", True),
        ("/schedules/collect%20btc", True),
        ("/ui/app.js", True),
        ("/ui/vendor/dagre/dagre.esm.js", True),
        ("/tasks/12/events", False),
        ("/api/v1/tasks", False),
        ("/api/v1/schedules/preview", False),
        ("/schedules/a/stats", False),
        ("/metrics", False),
        ("/ui", False),
        ("/uix/app.js", False),
        ("/nodes/x", False),
    ],
)
def test_which_paths_are_dashboard_paths(path: str, public: bool) -> None:
    assert is_dashboard_path(path) is public


def test_every_page_path_is_answered_by_the_shell() -> None:
    assert "/" in PAGES and all(p.startswith("/") for p in PAGES)
    assert Path(static_dir() / "index.html").is_file()
