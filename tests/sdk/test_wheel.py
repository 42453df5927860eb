"""The SDK is a distribution of its own: its wheel holds the client and the repository's
`contracts` package, and needs nothing of the server's (no torch). Builds the wheel with the
pinned hatchling from the dev extra, without build isolation: about 1 s."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What the wheel may import besides the standard library: itself and its declared dependencies.
ALLOWED = {"fairshare_sdk", "contracts", "httpx", "httpcore", "h11", "anyio", "sniffio"}
ALLOWED |= {"certifi", "idna", "msgspec", "typing_extensions", "exceptiongroup"}
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [*PIP_WHEEL, "--wheel-dir", str(out), str(ROOT / "sdk")],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("fairshare_sdk-*.whl")
    return built


def test_wheel_ships_the_client_and_the_contracts(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    contracts = {f"contracts/{p.name}" for p in (ROOT / "contracts").glob("*.py")}
    assert contracts <= names and "contracts/search.py" in contracts
    assert {
        "fairshare_sdk/__init__.py",
        "fairshare_sdk/langchain.py",
        "fairshare_sdk/py.typed",
    } <= names
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"fairshare_sdk", "contracts", wheel.name.split("-py3")[0] + ".dist-info"}
    assert not any("__pycache__" in name for name in names)


def test_wheel_requires_only_httpx_and_msgspec(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(archive.read(metadata).decode())
    requires = headers.get_all("Requires-Dist") or []
    assert [r for r in requires if "extra ==" not in r] == ["httpx==0.28.1", "msgspec==0.22.0"]
    assert [r.split(";")[0].strip() for r in requires if "extra ==" in r] == [
        "langchain-core==1.6.5"
    ]
    assert not any(
        name in r.lower()
        for r in requires
        for name in ("torch", "sentence-transformers", "fairshare")
    )


def test_wheel_imports_with_nothing_but_its_dependencies(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path)
    # Any import of a top-level module that is neither standard library nor allowed fails, so
    # a stray `import ledger` (or torch) in the client or the contracts shows up here.
    program = f"""
import sys
ALLOWED = {sorted(ALLOWED)!r}
class Refuse:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in sys.stdlib_module_names and top not in ALLOWED:
            raise ImportError(f"the SDK's wheel imported {{name}}")
sys.meta_path.insert(0, Refuse())
sys.path.insert(0, {str(tmp_path)!r})
import contracts, fairshare_sdk
from fairshare_sdk import Fairshare
assert contracts.__file__.startswith({str(tmp_path)!r}), contracts.__file__
assert fairshare_sdk.__file__.startswith({str(tmp_path)!r}), fairshare_sdk.__file__
Fairshare("fs_x", "http://127.0.0.1:9").close()
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-I", "-c", program], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
