# Copyright (c) bytelatent contributors. MIT licence.
#
# What the reference's *checkpoint loaders* need on top of tools/reference-bench's install_shims():
# bytelatent.generate.load_consolidated_model_and_tokenizer reads a TrainArgs (bytelatent/args.py),
# whose module imports the whole training stack (data loaders, checkpointing, metrics, profiling);
# bytelatent.entropy_model.load_entropy_model and bytelatent.hf's BltTokenizerAndPatcher are lighter
# but import from the same modules. Debian's torch 1.13 (and this machine's Python) lacks some of what
# those imports touch. Everything below is a stand-in at import time, without touching the reference
# checkout; nothing on the loaders' path or the model's path is replaced by code of ours, except:
#   - pydantic: the shim of reference_bench (pydantic v2 absent) is extended with what TrainArgs needs
#     (nested argument objects built from dicts, model_validate_json, recursive model_dump,
#     model_dump_json);
#   - fsspec: `filesystem("file")` (the only one get_fs returns for a local path) reads local files;
#   - Module.cuda() is the identity during a load (no GPU here; see no_cuda()).
# Each is listed in LOADER_SHIMS, which produce_golden.py records in config.json.
#
# This file is OUR code only; never copy reference code into it.
import contextlib
import enum
import glob as _glob
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import types
import typing

LOADER_SHIMS = []

# Modules imported at the top of training-stack files that the loaders never call (placeholders:
# any name taken from them is a class whose construction fails loudly). A module that the code
# imports inside try/except ImportError to choose an implementation (apex, sentencepiece, tiktoken)
# must NOT be listed: it stays absent, so the reference picks its fallback as it would without it.
_PLACEHOLDER_ROOTS = (
    "s3fs",
    "pyarrow",
    "rich",
    "wandb",
    "omegaconf",
    "tqdm",
    "pydantic_core",
    "jsonlines",
    "pandas",
    "torch.distributed.checkpoint",
    "xformers.profiler",
)


class _PlaceholderFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on sys.meta_path: a module of _PLACEHOLDER_ROOTS (or below one) that no real finder
    found becomes a placeholder module."""

    def __init__(self, placeholder_cls):
        self.placeholder_cls = placeholder_cls
        self.created = []

    def find_spec(self, name, path, target=None):
        if not any(name == r or name.startswith(r + ".") for r in _PLACEHOLDER_ROOTS):
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        mod = self.placeholder_cls(spec.name)
        mod.__path__ = []
        self.created.append(spec.name)
        return mod

    def exec_module(self, module):
        pass


def _shim_typer():
    try:
        import typer  # noqa: F401

        return
    except ImportError:
        pass

    class Typer:
        """typer.Typer as far as module level uses it: @app.command() / @app.callback() decorators."""

        def __init__(self, *a, **k):
            pass

        def command(self, *a, **k):
            return lambda fn: fn

        def callback(self, *a, **k):
            return lambda fn: fn

        def __call__(self, *a, **k):
            raise RuntimeError("golden-producer shim: typer command line not available")

    mod = types.ModuleType("typer")
    mod.Typer = Typer
    mod.Option = lambda *a, **k: None
    mod.Argument = lambda *a, **k: None
    mod.run = Typer.__call__
    sys.modules["typer"] = mod
    LOADER_SHIMS.append("typer: Typer() whose command()/callback() decorators return the function (CLI only)")


def _shim_fsspec():
    try:
        import fsspec  # noqa: F401

        return
    except ImportError:
        pass

    class AbstractFileSystem:
        pass

    class LocalFileSystem(AbstractFileSystem):
        """fsspec's local file system, as far as the loaders use it."""

        def open(self, path, mode="rb", **_kw):
            return open(path, mode)

        def read_text(self, path, encoding=None, **_kw):
            with open(path, encoding=encoding or "utf-8") as f:
                return f.read()

        def write_text(self, path, value, encoding=None, **_kw):
            with open(path, "w", encoding=encoding or "utf-8") as f:
                f.write(value)

        def exists(self, path, **_kw):
            return os.path.exists(path)

        def isdir(self, path):
            return os.path.isdir(path)

        def glob(self, pattern, **_kw):
            return sorted(_glob.glob(pattern))

    def filesystem(protocol, **_kw):
        if protocol not in ("file", "local"):
            raise RuntimeError(f"golden-producer shim: fsspec protocol {protocol!r} not available")
        return LocalFileSystem()

    mod = types.ModuleType("fsspec")
    mod.AbstractFileSystem = AbstractFileSystem
    mod.filesystem = filesystem
    sys.modules["fsspec"] = mod
    LOADER_SHIMS.append("fsspec: filesystem('file') reading local files (get_fs of a local path)")


def _shim_huggingface_hub_extras():
    """bytelatent.hf imports hf_hub_download and hub_mixin.ModelHubMixin; reference_bench's stand-in
    has only PyTorchModelHubMixin. Loading from a local folder never downloads."""
    import huggingface_hub

    if getattr(huggingface_hub, "__file__", None):
        return  # the real package

    def hf_hub_download(*_a, **_k):
        raise RuntimeError("golden-producer shim: no hub downloads (local folders only)")

    class ModelHubMixin:
        def __init_subclass__(cls, **_kwargs):
            super().__init_subclass__()

    huggingface_hub.hf_hub_download = hf_hub_download
    mixin = types.ModuleType("huggingface_hub.hub_mixin")
    mixin.ModelHubMixin = ModelHubMixin
    mixin.PyTorchModelHubMixin = huggingface_hub.PyTorchModelHubMixin
    sys.modules["huggingface_hub.hub_mixin"] = mixin
    huggingface_hub.hub_mixin = mixin
    LOADER_SHIMS.append("huggingface_hub.hf_hub_download (raises: no downloads), hub_mixin.ModelHubMixin (empty mixin)")


def _extend_pydantic_shim():
    """reference_bench's minimal pydantic v2 BaseModel (used when pydantic v2 is absent) builds flat
    argument objects. TrainArgs nests them (data.patcher_args, model, entropy_model, distributed...):
    pydantic v2 builds a nested model from a dict, validates JSON text and dumps recursively."""
    import pydantic

    base = pydantic.BaseModel
    if pydantic.VERSION != "2-shim" or getattr(base, "__golden_loader_ext__", False):
        return  # real pydantic v2, or already extended

    def is_model(t):
        return isinstance(t, type) and issubclass(t, base)

    def coerce(value, ann):
        if value is None:
            return None
        if is_model(ann):
            return ann(**value) if isinstance(value, dict) else value
        if isinstance(ann, type) and issubclass(ann, enum.Enum):
            return value if isinstance(value, ann) else ann(value)
        origin = typing.get_origin(ann)
        if origin is typing.Union or (hasattr(types, "UnionType") and isinstance(ann, types.UnionType)):
            args = typing.get_args(ann)
            if isinstance(value, int) and not isinstance(value, bool) and float in args and int not in args:
                return float(value)  # pydantic v2: an int for `float | None` becomes a float
            for arg in args:
                if arg is type(None):
                    continue
                if is_model(arg) and isinstance(value, dict):
                    return arg(**value)
                if isinstance(arg, type) and issubclass(arg, enum.Enum) and isinstance(value, str):
                    try:
                        return arg(value)
                    except ValueError:
                        continue
            return value
        if ann is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # pydantic v2 lax mode: int -> float for a float field
        return value

    original_init = base.__init__

    def __init__(self, **data):
        types_ = type(self).__shim_types__
        data = {k: (coerce(v, types_[k]) if k in types_ else v) for k, v in data.items()}
        original_init(self, **data)

    def dump_value(v, mode):
        if isinstance(v, base):
            return v.model_dump(mode=mode)
        if isinstance(v, (list, tuple)):
            return [dump_value(x, mode) for x in v]
        if isinstance(v, dict):
            return {k: dump_value(x, mode) for k, x in v.items()}
        if mode == "json" and isinstance(v, enum.Enum):
            return v.value
        return v

    def model_dump(self, mode="python", **_kw):
        return {k: dump_value(getattr(self, k), mode) for k in type(self).__shim_fields__}

    def model_dump_json(self, indent=None, **_kw):
        assert indent is None, "golden-producer shim: compact model_dump_json only"
        return pydantic_json(self.model_dump(mode="json"))

    @classmethod
    def model_validate(cls, obj, **_kw):
        return obj if isinstance(obj, cls) else cls(**obj)

    @classmethod
    def model_validate_json(cls, text, **_kw):
        return cls(**json.loads(text))

    base.__init__ = __init__
    base.model_dump = model_dump
    base.model_dump_json = model_dump_json
    base.model_validate = model_validate
    base.model_validate_json = model_validate_json
    base.__golden_loader_ext__ = True
    LOADER_SHIMS.append(
        "pydantic shim extended: nested argument objects from dicts (X, X | None), str enums, int->float, "
        "model_validate(_json), recursive model_dump(mode=), model_dump_json (compact)"
    )


def _pydantic_float(x):
    """A float as pydantic-core's JSON writes it: positional for decimal exponents -5..15 ("0.00001",
    "10000.0"), else "1e-6" / "1e+16" (Python's repr pads the exponent: "1e-06", and goes
    scientific from 1e-5 on)."""
    import decimal

    r = repr(x)
    if "e" not in r or x != x or x in (float("inf"), float("-inf")):
        return r
    mantissa, exponent = r.split("e")
    e = int(exponent)
    if -5 <= e < 16:
        return format(decimal.Decimal(r), "f") if e < 0 else r
    return f"{mantissa}e{'-' if e < 0 else '+'}{abs(e)}"


def pydantic_json(value):
    """Compact JSON as pydantic v2's model_dump_json writes it (checked against pydantic 2.13)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return _pydantic_float(value)
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + pydantic_json(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(pydantic_json(v) for v in value) + "]"
    raise TypeError(type(value))


class _LenientOps:
    """torch.ops while bytelatent.distributed is imported: its module level collects op handles of
    torch >= 2.5 (for selective activation checkpointing, a training option) that 1.13 lacks."""

    def __init__(self, path="torch.ops"):
        self._path = path

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _LenientOps(f"{self._path}.{name}")

    def __repr__(self):
        return f"<placeholder {self._path}>"


def _import_real_distributed():
    """reference_bench stands in bytelatent.distributed with get_local_rank() only; TrainArgs needs
    its DistributedArgs and EnvironmentArgs. Import the real module with what 1.13 lacks at its
    module level stood in for the duration of the import."""
    import torch
    import torch.utils.checkpoint as tuc

    name = "bytelatent.distributed"
    if name in sys.modules and hasattr(sys.modules[name], "__file__"):
        return
    sys.modules.pop(name, None)
    added = []
    for attr in ("CheckpointPolicy", "create_selective_checkpoint_contexts"):
        if not hasattr(tuc, attr):
            setattr(tuc, attr, type(attr, (), {"__module__": "torch.utils.checkpoint"}))
            added.append(f"torch.utils.checkpoint.{attr}")
    if not hasattr(torch, "_dynamo"):
        torch._dynamo = types.SimpleNamespace(allow_in_graph=lambda fn: fn)
        added.append("torch._dynamo.allow_in_graph = identity")
    real_ops = torch.ops
    torch.ops = _LenientOps()
    try:
        importlib.import_module(name)
    finally:
        torch.ops = real_ops
    import bytelatent

    bytelatent.distributed = sys.modules[name]
    LOADER_SHIMS.append(
        "bytelatent.distributed: the real module, imported with torch.ops answering any op name during the "
        "import (its module level collects torch >= 2.5 op handles for activation checkpointing)"
        + (" and " + ", ".join(added) + " (placeholders)" if added else "")
    )


def install_loader_shims(reference):
    """reference_bench.install_shims(reference) (must already have run), then the above. Returns
    LOADER_SHIMS."""
    import torch

    from reference_bench import _PlaceholderModule  # noqa: F401  (same placeholders as reference_bench)

    _extend_pydantic_shim()
    _shim_typer()
    _shim_fsspec()
    _shim_huggingface_hub_extras()
    if not hasattr(torch, "compiler"):
        torch.compiler = types.SimpleNamespace(disable=lambda fn=None, **_k: fn if fn is not None else (lambda f: f))
        LOADER_SHIMS.append("torch.compiler.disable = identity (torch < 2.1; a decorator in bytelatent/generate.py)")
    # The model modules first, without the finder (their try/except ImportError choices stay as they are).
    importlib.import_module("bytelatent.model.blt")
    importlib.import_module("bytelatent.transformer")
    finder = _PlaceholderFinder(_PlaceholderModule)
    sys.meta_path.append(finder)
    _import_real_distributed()
    for mod in ("bytelatent.args", "bytelatent.generate", "bytelatent.entropy_model", "bytelatent.hf"):
        importlib.import_module(mod)
    if finder.created:
        LOADER_SHIMS.append("placeholder modules (imported by the training stack, never called by the loaders): " + ", ".join(finder.created))
    return LOADER_SHIMS


@contextlib.contextmanager
def no_cuda():
    """load_consolidated_model_and_tokenizer and hf.py call Module.cuda(); this machine has no GPU:
    identity for the duration of the call."""
    import torch

    original = torch.nn.Module.cuda
    torch.nn.Module.cuda = lambda self, device=None: self
    try:
        yield
    finally:
        torch.nn.Module.cuda = original


NO_CUDA_SHIM = "torch.nn.Module.cuda = identity while a reference loader runs (CPU only)"
