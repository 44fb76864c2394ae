"""The web interface ``resmon serve`` serves beside the API: pages for people.

:mod:`resmon.web.pages` holds the pages (a Flask blueprint), :mod:`resmon.web.charts`
lays the store's answers out as chart series, :mod:`resmon.web.formats` writes
numbers and times.  Templates and static files (the styles, two small scripts and
the vendored uPlot with its licence, see ``scripts/update-vendored.sh``) ship in the
package: nothing is built or fetched at install or run time.
"""

from __future__ import annotations

from flask import Flask

from resmon.web.formats import FILTERS
from resmon.web.pages import bp


def init_app(app: Flask) -> None:
    """Register the pages and their template filters on ``app``."""
    app.register_blueprint(bp)
    app.jinja_env.filters.update(FILTERS)
