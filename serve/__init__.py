"""The web app's parts: plumbing.py (errors, body limits, the uvicorn server with bounded headers), batcher.py
(the served model and its inference thread), routes.py (the endpoints; create_app) and labelling.py (the
labelling page's answers, queue and endpoints, with --label_dir). app.py runs them."""
from serve.batcher import CANDIDATES, Batcher, Model  # noqa: F401
from serve.plumbing import INTERNAL_ERROR, server_config  # noqa: F401
from serve.routes import create_app  # noqa: F401
