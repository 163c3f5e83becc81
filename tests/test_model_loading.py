"""Loading models safely (issue 15, items 1 and 4): code in a model folder runs only after an explicit
--trust-remote-code / trust_remote_code=True, and nothing is ever fetched from a hub (a name that is not a
local folder is refused at once, without a single network connection)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_adapters import ARCHITECTURES, save, write_remote
from workbench.cli import main as cli
from workbench.models.adapters import AdapterError, load_adapter
from workbench.models.folders import ModelLoadError
from workbench.models.loading import load_model

REPO = Path(__file__).resolve().parent.parent
# Appended to a remote-code model's modelling file: importing it leaves a file named RAN beside it.
SENTINEL = '\nimport pathlib as _p\n_p.Path(__file__).resolve().parent.joinpath("RAN").write_text("imported")\n'


@pytest.fixture(scope="module")
def remote_folder(tmp_path_factory):
    folder = write_remote(tmp_path_factory.mktemp("remote") / "tiny-dllm", "tiny-unknown")
    with open(folder / "modeling_tiny.py", "a") as f:
        f.write(SENTINEL)
    return folder


def ran(folder: Path) -> bool:
    """Whether the folder's code ran (transformers imports a copy from its module cache: look there too)."""
    from transformers.utils import HF_MODULES_CACHE

    return (folder / "RAN").exists() or any(Path(HF_MODULES_CACHE).rglob("RAN"))


@pytest.fixture(autouse=True)
def no_trace_of_earlier_runs():
    from transformers.utils import HF_MODULES_CACHE

    for stale in Path(HF_MODULES_CACHE).rglob("RAN"):
        stale.unlink()


def test_remote_code_is_refused_without_opt_in_and_runs_with_it(remote_folder):
    for load, error in ((load_adapter, AdapterError), (load_model, ModelLoadError)):
        with pytest.raises(error) as err:
            load(remote_folder)
        message = str(err.value)
        assert "--trust-remote-code" in message and "trust_remote_code=True" in message
        assert str(remote_folder) in message and "auto_map" in message
    assert not ran(remote_folder)
    model, _ = load_model(remote_folder, trust_remote_code=True)
    assert ran(remote_folder) and model.vocab_size == 32


def test_a_custom_tokenizer_counts_as_remote_code(tmp_path):
    folder = save(ARCHITECTURES["bert"](), tmp_path / "bert")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterError, match="tokenizer_config.json names Python code"):
        load_adapter(folder)


@pytest.mark.parametrize("command", [
    ["run", "--strategy", "threshold", "--limit", "1"],
    ["trace", "--strategy", "threshold"],
])
def test_cli_refuses_remote_code_without_the_flag(command, remote_folder, tmp_path, capsys):
    assert cli([*command, "--model", str(remote_folder), *(["--store", str(tmp_path / "r.db")]
                                                            if command[0] == "run" else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert "--trust-remote-code" in err and len(err.splitlines()) == 1
    assert not ran(remote_folder)


def test_ablate_and_train_refuse_remote_code_without_the_flag(remote_folder, tmp_path, capsys):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "mdlm").symlink_to(remote_folder, target_is_directory=True)
    assert cli(["ablate", "--model-dir", str(model_dir), "--trainers", "mdlm", "--strategies", "threshold",
                "--tau", "0.9", "--limit", "1", "--store", str(tmp_path / "r.db")]) == 2
    assert cli(["train", "--init", str(remote_folder), "--out", str(tmp_path / "out"), "--preset", "micro"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all("--trust-remote-code" in e for e in errors)
    assert not ran(remote_folder) and not (tmp_path / "out").exists()


def test_run_decodes_a_trusted_remote_model(remote_folder, tmp_path, capsys):
    task = tmp_path / "words.jsonl"
    task.write_text(json.dumps({"prompt": "w1 w2 w3", "answer": "w4"}) + "\n")
    assert cli(["run", "--model", str(remote_folder), "--trust-remote-code", "--strategy", "threshold",
                "--task", f"jsonl:{task}?match=exact", "--gen-length", "4", "--block-size", "2",
                "--store", str(tmp_path / "r.db"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 1


# Runs the CLI in a fresh process whose sockets refuse to connect and report that they were asked, with the
# hub's offline switches unset (huggingface_hub reads them once, at import).
GUARDED = textwrap.dedent("""
    import socket, sys
    def refuse(*args, **kwargs):
        print("NETWORK ATTEMPT", args[:1], file=sys.stderr, flush=True)
        raise OSError("network disabled by the test")
    socket.socket.connect = socket.socket.connect_ex = refuse
    socket.create_connection = socket.getaddrinfo = refuse
    from workbench.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("command", [
    ["train", "--init", "gpt2", "--preset", "micro", "--out", "OUT"],
    ["run", "--model", "gpt2", "--limit", "1", "--store", "OUT/r.db"],
])
def test_a_hub_name_is_refused_without_touching_the_network(command, tmp_path):
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")}
    args = [a.replace("OUT", str(tmp_path / "out")) for a in command]
    done = subprocess.run([sys.executable, "-c", GUARDED, *args], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)})
    assert "NETWORK ATTEMPT" not in done.stderr
    assert done.returncode == 2, done.stderr
    assert "gpt2" in done.stderr and "nothing is downloaded" in done.stderr


def test_load_tokenizer_reads_local_folders_only(tmp_path):
    from workbench.models.tokenizer import load_tokenizer

    with pytest.raises(ModelLoadError, match="not a local folder"):
        load_tokenizer("gpt2")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="holds no tokenizer.json") as err:
        load_tokenizer(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_every_from_pretrained_call_in_the_package_stays_local():
    """A static guard for code written later: each `X.from_pretrained(...)` passes local_files_only=True."""
    import ast

    offenders = []
    for root in ("workbench", "trainers", "strategies", "plugins"):
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "from_pretrained"):
                    local = [k for k in node.keywords if k.arg == "local_files_only"]
                    spread = any(k.arg is None for k in node.keywords)  # **kwargs: checked where they are built
                    if not spread and not (local and getattr(local[0].value, "value", None) is True):
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, f"from_pretrained without local_files_only=True: {offenders}"
