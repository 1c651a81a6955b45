"""Which model a command means: `models:/name@alias`, `models:/name/N`, `runs:/…` or a bundle folder, parsed once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aeops.errors import DataError

PRODUCTION = "production"  # the alias `serve`, `score`, `monitor` and `compress` use by default


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference; `uri` is what MLflow (or `ModelBundle.load`) is given."""

    uri: str
    name: str | None = None  # registered model name (registry references only)
    version: str | None = None  # `models:/name/N`
    alias: str | None = None  # `models:/name@alias`

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Registry references keep their name and version or alias; anything else (`runs:/`, a folder) only its URI."""
        ref = text.removeprefix("models:/")
        if ref == text or not ref:
            return cls(uri=text)
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return cls(uri=text, name=name, alias=alias)
        name, _, version = ref.rpartition("/")
        return cls(uri=text, name=name, version=version) if name else cls(uri=text, name=ref)

    @classmethod
    def default(cls, model_name: str) -> ModelRef:
        """The served model: `models:/<model_name>@production`."""
        return cls.parse(registered(model_name, alias=PRODUCTION))

    @property
    def registered(self) -> bool:
        """A registry reference that names a version or an alias (a bare `models:/name` names neither)."""
        return self.name is not None and (self.version is not None or self.alias is not None)

    @property
    def is_folder(self) -> bool:
        return "://" not in self.uri and ":/" not in self.uri and Path(self.uri).is_dir()

    def __str__(self) -> str:
        return self.uri


def registered(name: str, *, version: int | str | None = None, alias: str | None = None) -> str:
    """`models:/name/N` or `models:/name@alias`."""
    if (version is None) == (alias is None):
        raise ValueError("name a version or an alias")
    return f"models:/{name}/{version}" if alias is None else f"models:/{name}@{alias}"


def resolve_bundle(model: str, tracking_uri: str) -> tuple[Path, str | None, str | None]:
    """(the model bundle folder, registered name, version) of a bundle folder (name and version None) or of
    `models:/<name>/<version>` / `models:/<name>@<alias>` (downloaded from the registry)."""
    if os.path.isdir(model):
        return Path(model), None, None
    if not model.startswith("models:/"):
        raise DataError(f"--model {model}: expected models:/<name>/<version>, models:/<name>@<alias> "
                        "or a model bundle folder (e.g. bundle)")
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri)
    ref = ModelRef.parse(model)
    if not ref.registered:
        name = ref.name or "<name>"
        raise DataError(f"--model {model}: name a version or an alias, e.g. {registered(name, version=1)} or "
                        f"{ModelRef.default(name)}")
    name = str(ref.name)
    try:
        if ref.alias is not None:
            version = client.get_model_version_by_alias(name, ref.alias).version
        else:
            version = client.get_model_version(name, str(ref.version)).version
        local = mlflow.artifacts.download_artifacts(artifact_uri=registered(name, version=version),
                                                    tracking_uri=tracking_uri)
    except MlflowException as err:
        raise DataError(f"{model}: not found in the registry ({str(err).splitlines()[0][:160]})") from None
    return _bundle_in(Path(local), model), name, str(version)


def _bundle_in(model_dir: Path, model: str) -> Path:
    import yaml

    if not (model_dir / "MLmodel").is_file():
        raise DataError(f"{model}: not an MLflow model (no MLmodel file)")
    meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    artifacts = meta.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    if "bundle" not in artifacts:
        raise DataError(f"{model}: not an aeops model (its pyfunc has no 'bundle' artifact)")
    return model_dir / artifacts["bundle"]["path"]
