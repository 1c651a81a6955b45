"""`mlflow ui --app-name aeops`: MLflow's own server, opening experiments in the model-training view.

MLflow 3.17's UI picks GenAI or Model training on the client: from `?workflowType=` in the address,
else from the browser's local storage, else GenAI (the experiment tag `mlflow.experimentKind` is not
consulted). This app serves MLflow's page with one line that stores "machine_learning" when the
browser has no choice stored yet; the UI's own switch still changes it, and the choice is kept.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import HTMLResponse
from mlflow.server import app as flask_app
from mlflow.server.fastapi_app import app

KEY = "mlflow.workflowType_v1"  # the UI's local-storage key for its GenAI / Model training switch
SCRIPT = (f'<script>try{{if(!localStorage.getItem("{KEY}"))'
          f'localStorage.setItem("{KEY}",JSON.stringify("machine_learning"))}}catch(e){{}}</script>')


def page() -> str:
    html = (Path(flask_app.static_folder) / "index.html").read_text(encoding="utf-8")
    return html.replace("<head>", "<head>" + SCRIPT, 1)


async def index() -> HTMLResponse:
    return HTMLResponse(page())


app.add_api_route("/", index, include_in_schema=False)
app.router.routes.insert(0, app.router.routes.pop())  # before MLflow's catch-all mount
