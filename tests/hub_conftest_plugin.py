"""Pytest fixtures that point the real `huggingface_hub` client at the test Hub server (`hub_server.py`).

- `hub_server` (session): a started `HubServer` on 127.0.0.1.
- `hub` (function): sets `HF_ENDPOINT`, `HF_HUB_DISABLE_XET=1`, a dummy `HF_TOKEN` and an empty temporary
  `HF_HOME` (and unsets `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE`) in `os.environ` for subprocesses, and
  patches the values `huggingface_hub` and `transformers` read from those variables at import time, for
  this process. Yields a `HubEnvironment` with the server, its URL, a fresh `namespace/` for repo ids,
  and `subprocess_env()` for child processes.

Under `--import-mode=importlib` `tests/` is not on `sys.path`: a test module loads this file by path (see
`_load_plugin` in `tests/test_hub.py`) and binds `hub_server = plugin.hub_server; hub = plugin.hub`. To share
the fixtures with every test, add `pythonpath = ["tests"]` to `[tool.pytest.ini_options]` and
`pytest_plugins = ["hub_conftest_plugin"]` to `tests/conftest.py`.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


def _load(name: str, filename: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(filename))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec: dataclasses resolve their module by name
        spec.loader.exec_module(module)
    return sys.modules[name]


hub_server_module = _load("vlmixer_test_hub_server", "hub_server.py")
HubServer = hub_server_module.HubServer

DUMMY_TOKEN = "hf_vlmixer_dummy_token"
_repo_counter = itertools.count()


@dataclass
class HubEnvironment:
    """What a test needs to talk to the test Hub."""

    server: HubServer
    url: str
    hf_home: Path
    token: str = DUMMY_TOKEN

    def repo_id(self, name: str) -> str:
        """A repo id unique within the session (the server lives for the whole session)."""
        return f"{self.server.user}/{name}-{next(_repo_counter)}"

    def subprocess_env(self, hf_home: str | os.PathLike | None = None, **extra: str) -> dict[str, str]:
        """`os.environ` for a child process: Hub variables set, `PYTHONPATH` dropped, `HF_HOME` as given."""
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HUB_CACHE", "HF_MODULES_CACHE")
        }
        env.update(
            HF_ENDPOINT=self.url,
            HF_HUB_DISABLE_XET="1",
            HF_TOKEN=self.token,
            HF_HOME=str(hf_home if hf_home is not None else self.hf_home),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
        )
        env.pop("HF_HUB_OFFLINE", None)
        env.pop("TRANSFORMERS_OFFLINE", None)
        env.update(extra)
        return env


@pytest.fixture(scope="session")
def hub_server():
    with HubServer() as server:
        yield server


@pytest.fixture
def hub(hub_server, monkeypatch, tmp_path) -> HubEnvironment:
    from huggingface_hub import constants, hf_api
    from transformers.utils import hub as transformers_hub

    url = hub_server.url
    hf_home = tmp_path / "hf_home"
    hf_home.mkdir()

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_TOKEN", DUMMY_TOKEN)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")

    # huggingface_hub reads these once, at import time.
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "default_cache_path"):
        monkeypatch.setattr(constants, name, str(hf_home / "hub"))
    for name in ("HF_ASSETS_CACHE", "HUGGINGFACE_ASSETS_CACHE", "default_assets_cache_path"):
        monkeypatch.setattr(constants, name, str(hf_home / "assets"))
    monkeypatch.setattr(constants, "HF_XET_CACHE", str(hf_home / "xet"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    # Clients created at import time keep the endpoint they were created with.
    monkeypatch.setattr(hf_api.api, "endpoint", url)
    monkeypatch.setattr(transformers_hub, "_hf_api", None)
    yield HubEnvironment(server=hub_server, url=url, hf_home=hf_home)
