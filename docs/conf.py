"""Sphinx configuration of the xpcnn documentation (``nox -s docs`` builds it into ``docs/_build/html``).

Three sources feed the site: the guides (MyST Markdown under ``guides/``, their ``python`` blocks executed
by ``_ext/xpcnn_docs.py``), the API reference (``api/``, autosummary over the docstrings, read by napoleon
so that prose docstrings and NumPy-style sections both render) and the gallery (``gallery/``, run by
sphinx-gallery: each page runs one of ``examples/`` in its quick mode on the NumPy backend).
"""

from __future__ import annotations

import os
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the checkout's xpcnn, also when it is not installed
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT / "examples"))  # the gallery imports the examples as modules

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the gallery's tiny runs: one BLAS thread is faster on 2 cores
os.environ.setdefault("MPLBACKEND", "Agg")
# the MNIST examples read $XPCNN_DATA/mnist; a checkout beside the project's shared/ folder (CI's layout) uses it
if "XPCNN_DATA" not in os.environ and (ROOT.parent / "shared" / "datasets").is_dir():
    os.environ["XPCNN_DATA"] = str(ROOT.parent / "shared" / "datasets")

import xpcnn  # noqa: E402

project = "xpcnn"
author = "xpcnn maintainers"
copyright = "xpcnn maintainers"
release = xpcnn.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
    "xpcnn_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "screenshots", "**.ipynb_checkpoints", "gallery/GALLERY_HEADER.rst", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["xpcnn.css"]

# --- Markdown (guides, tutorial) ---------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # README-style links to "#section" anchors keep working
# the guides keep the README's relative links to the repository's files (benchmarks/, tests/, ...): those are
# not pages of the site, and MyST would otherwise warn about each
suppress_warnings = ["myst.xref_missing"]

# --- API reference ---------------------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autosummary_ignore_module_all = False  # a module page lists its __all__, re-exports included
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = True
autodoc_typehints = "description"  # types beside each parameter, signatures stay short
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True  # `fit(batch_size=None, ...)` as written, not the default's repr
# optional libraries that some modules import at the top: the reference builds without them
autodoc_mock_imports = ["mpi4py", "onnx", "onnxruntime", "cupy", "cupyx"]
# napoleon reads the NumPy-style sections (Parameters, Returns, Raises, Examples) and leaves the house's
# prose docstrings as they are; numpydoc's strict validation would reject the prose ones
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True
napoleon_preprocess_types = True
# docstrings write ``x (N, C, H, W)`` and `name` freely: single backticks are literal, never a failed reference
default_role = "literal"
nitpicky = False



def _write_if_changed(path: pathlib.Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _write_generated_api_pages() -> None:
    """``api/xpcnn.rst`` (git-ignored, rewritten when it changes): the top-level namespace. Each name it
    re-exports links to its page in the module that defines it (``xpcnn.Sequential`` is
    ``xpcnn.model.Sequential``), so no object is described twice."""
    import importlib
    import inspect

    from docstring_check import API_MODULES

    lines = ["xpcnn", "=====", "", ".. automodule:: xpcnn", "   :no-members:", "", ".. currentmodule:: None", "",
             "The names most scripts need, re-exported at the top level; each links to its module's page.", "",
             ".. autosummary::", "   :nosignatures:", ""]
    own = []
    for name in xpcnn.__all__:
        obj = getattr(xpcnn, name)
        if inspect.ismodule(obj):
            continue
        home = next((m for m in API_MODULES[1:] if getattr(importlib.import_module(m), name, None) is obj
                     and name in getattr(importlib.import_module(m), "__all__", ())), None)
        if home is None:
            own.append(name)
        else:
            lines.append(f"   ~{home}.{name}")
    if own:
        lines += ["", ".. autosummary::", "   :toctree: generated", "   :nosignatures:", ""]
        lines += [f"   xpcnn.{name}" for name in own]
    _write_if_changed(DOCS / "api" / "xpcnn.rst", "\n".join(lines) + "\n")


_write_generated_api_pages()

# docstrings of xpcnn/ops write |x| for an absolute value, which reST reads as a substitution: show it as is
rst_prolog = """
.. |x| replace:: \\|x\\|
.. |z| replace:: \\|z\\|
"""

# --- Gallery -------------------------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": ["gallery"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",  # every plot_*.py runs
    "within_subsection_order": "FileNameSortKey",
    "image_scrapers": ("matplotlib", "xpcnn_docs.saved_png_scraper"),
    "reset_modules": ("matplotlib", "xpcnn_docs.reset_gallery_env"),
    "remove_config_comments": True,
    "download_all_examples": False,
    "plot_gallery": os.environ.get("XPCNN_DOCS_GALLERY", "True"),
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "show_memory": False,
    "min_reported_time": 0,
    "line_numbers": False,
    "matplotlib_animations": False,
    "image_srcset": [],
    "default_thumb_file": str(DOCS / "images" / "feature_maps.png"),
}

# --- HTML --------------------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"xpcnn {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_context = {"default_mode": "light"}
html_show_sourcelink = False
html_last_updated_fmt = None
