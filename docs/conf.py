"""Sphinx configuration of streamem's documentation site.

Built by ``.ci/run`` with warnings as errors::

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import streamem

project = "streamem"
author = "the streamem developers"
copyright = "the streamem developers"
release = version = streamem.__version__

extensions = [
    "myst_parser",  # the pages are Markdown
    "numpydoc",  # the docstrings are numpydoc's
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx_click",  # the command line's reference from its click commands
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

autosummary_generate = True
# scikit-learn's metadata-routing methods are left out: their docstrings point into its own site
autodoc_default_options = {
    "members": True,
    "inherited-members": True,
    "exclude-members": "get_metadata_routing, set_fit_request, set_score_request, set_partial_fit_request",
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# the docstrings' roles name classes by their public path (streamem.GaussianMixture)
numpydoc_xref_param_type = False

html_theme = "alabaster"
html_title = f"streamem {version}"
html_theme_options = {
    "description": "Gaussian mixtures by EM on data larger than memory, on Dask",
    "fixed_sidebar": True,
}
