"""The web app's parts: plumbing.py (errors, body limits, the uvicorn server with bounded headers), batcher.py
(the served models and their inference thread), models_dir.py (the models by name: app.py's one, or a folder's
with a watcher that loads files added or replaced and unloads those removed), routes.py (the endpoints;
create_app) and labelling.py (the labelling page's answers, queue and endpoints, with --label_dir). app.py runs
them."""
from serve.batcher import CANDIDATES, Batcher, Model  # noqa: F401
from serve.models_dir import Models, ModelsDir  # noqa: F401
from serve.plumbing import INTERNAL_ERROR, server_config  # noqa: F401
from serve.routes import create_app  # noqa: F401
