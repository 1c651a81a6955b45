"""Which model a command means: `models:/name@alias`, `models:/name/N`, `runs:/…` or a bundle folder, parsed once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
