"""unitsync's command line (cyclopts). Thin: parse, call the client, print.

Importing this package must stay cheap: ``unitsync --help`` imports neither Trio nor capnp.
"""

from ._app import app as app
from ._app import main as main
