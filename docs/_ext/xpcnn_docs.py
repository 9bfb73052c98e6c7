"""The Sphinx extension that keeps xpcnn's documentation honest.

Loaded by ``docs/conf.py``. During every build it

* checks that every public name of the documented modules has a docstring
  (:mod:`docstring_check`; a missing one is a warning, and ``nox -s docs`` turns warnings into errors);
* runs the ``python`` code blocks of the guides, page by page, each page in one namespace of its own, in a
  temporary folder, on the NumPy backend with seed 0: a block that raises is a warning naming its line
  (a block written ``{code-block} python`` with ``:class: no-run`` is shown only: it needs a GPU, MPI, a
  folder of photos or a download);
* runs the doctests (``>>>``) of the docstrings that autodoc renders and of the pages, comparing outputs;

and gives the gallery its scraper for the PNG files the examples write (:func:`saved_png_scraper`) and its
per-example reset (:func:`reset_gallery_env`).
"""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import pathlib
import shutil
import tempfile
import traceback

from docutils import nodes
from sphinx.util import logging

logger = logging.getLogger(__name__)

# pages whose ``python`` blocks run (the tutorial is run by tests/test_examples.py with smaller sizes)
EXECUTED_PREFIXES = ("guides/", "index", "getting_started")


# --- the gallery ------------------------------------------------------------------------------------------------

def reset_gallery_env(gallery_conf, fname, when=None):
    """Before each gallery example: the NumPy backend, seed 0, no figure left open."""
    import xpcnn

    xpcnn.set_backend("numpy")
    xpcnn.manual_seed(0)


_scraped: set[tuple[str, float]] = set()


def saved_png_scraper(block, block_vars, gallery_conf):
    """The PNG files that the code block just wrote into the folder ``out`` of the example's namespace.

    The examples save their figures (and close them) rather than leave them open, so the matplotlib
    scraper finds nothing; this one copies each new or rewritten ``out/*.png`` into the gallery's image
    folder, in name order.
    """
    from sphinx_gallery.scrapers import figure_rst

    out = block_vars["example_globals"].get("out")
    if not isinstance(out, (str, os.PathLike)) or not os.path.isdir(out):
        return ""
    image_names = []
    for png in sorted(pathlib.Path(out).glob("*.png")):
        key = (str(png.resolve()), png.stat().st_mtime)
        if key in _scraped:
            continue
        _scraped.add(key)
        target = next(block_vars["image_path_iterator"])
        shutil.copyfile(png, target)
        image_names.append(target)
    return figure_rst(image_names, gallery_conf["src_dir"])


# --- executed code blocks and doctests -----------------------------------------------------------------------

def _page_globals() -> dict:
    import numpy as np

    import xpcnn

    xpcnn.set_backend("numpy")
    xpcnn.manual_seed(0)
    return {"__name__": "__docs__", "np": np, "xpcnn": xpcnn}


@contextlib.contextmanager
def _in_scratch_folder():
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="xpcnn-docs-") as tmp:
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(old)


def _run_blocks(app, doctree):
    docname = app.env.docname
    run_python = docname.startswith(EXECUTED_PREFIXES)
    blocks = []
    for node in doctree.findall(lambda n: isinstance(n, (nodes.literal_block, nodes.doctest_block))):
        if isinstance(node, nodes.doctest_block) or node.astext().lstrip().startswith(">>>"):
            blocks.append(("doctest", node))
        elif run_python and node.get("language") == "python" and "no-run" not in node.get("classes", []):
            blocks.append(("python", node))
    if not blocks:
        return
    globs = _page_globals()
    parser = doctest.DocTestParser()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    with _in_scratch_folder():
        for kind, node in blocks:
            source = node.astext()
            path = node.source or str(app.env.doc2path(docname))
            if kind == "python":
                try:
                    with contextlib.redirect_stdout(io.StringIO()):
                        exec(compile(source, f"<{docname}:{node.line}>", "exec"), globs)
                except Exception:
                    logger.warning("code block failed:\n%s", traceback.format_exc(limit=-2), location=node)
                continue
            test = parser.get_doctest(source, globs, f"{docname}:{node.line}", path, node.line or 0)
            report = io.StringIO()
            runner = doctest.DocTestRunner(optionflags=flags)
            runner.run(test, out=report.write, clear_globs=False)
            if runner.failures:
                logger.warning("doctest failed:\n%s", report.getvalue(), location=node)


def _check_docstrings(app, env, *args):
    from docstring_check import missing_docstrings

    for name in missing_docstrings():
        logger.warning("public name without a docstring: %s", name, type="xpcnn", subtype="docstring")
    return []


def setup(app):
    app.connect("doctree-read", _run_blocks)
    app.connect("env-check-consistency", lambda app, env: _check_docstrings(app, env))
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True}
