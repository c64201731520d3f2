"""The bad-input corpus: every way a user's folder, archive, config, checkpoint or disk can be wrong.

Each :class:`Case` builds its bad input in a fresh temporary folder (nothing binary is stored in
the repository), feeds it to the library (``surface="api"``) or to the ``metalearn`` command
(``surface="cli"``, called in-process through :func:`metalearn.cli.main`), and demands:

* api: the documented exception type, with a message matching ``fix`` (the words that name
  the fix), or, for inputs that must be *accepted* (non-image files, mixed image modes), no
  exception and a passing ``check``;
* cli: exit status 2, no traceback on stderr (an exception escaping ``main`` counts as one),
  and ``fix`` on stderr.

:func:`run_case` returns ``(ok, detail)`` so both ``tests/test_reliability_corpus.py`` and
``benchmarks/reliability.py`` (which counts the cases) use the same corpus.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import subprocess
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image


@dataclass
class Case:
    """One bad input.

    Attributes:
        name: Short id (used as the pytest id).
        surface: ``"api"`` or ``"cli"``.
        build: ``build(tmp) -> callable`` (api) or ``-> argv list`` (cli). May return
            ``(thing, context_manager)`` to run it under a context (a patched disk).
        expect: Exception type(s) the api must raise; ``None``: the input must be accepted.
        fix: Regex the error message (api) or stderr (cli) must match.
        check: For accepted inputs, ``check(result)`` raises AssertionError when wrong.
    """

    name: str
    surface: str
    build: Callable[[Path], object]
    expect: type[BaseException] | tuple[type[BaseException], ...] | None = None
    fix: str = ""
    check: Callable[[object], None] | None = None


# ----------------------------------------------------------------------------- builders

def png_bytes(value: int = 128, size: int = 12, mode: str = "L") -> bytes:
    rng = np.random.default_rng(value)
    if mode in ("RGB", "RGBA"):
        arr = rng.integers(0, 256, (size, size, len(mode)), dtype=np.uint8)
    else:
        arr = np.clip(value + rng.integers(-5, 6, (size, size)), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB" if mode == "RGB" else ("RGBA" if mode == "RGBA" else "L"))
    if mode not in ("L", "RGB", "RGBA"):
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(value: int = 128, size: int = 32) -> bytes:
    arr = np.random.default_rng(value).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def image_folder(root: Path, counts: dict[str, int], size: int = 12) -> Path:
    """``root/<class>/<i>.png`` with ``counts[class]`` grey images each."""
    for i, (cls, n) in enumerate(counts.items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for j in range(n):
            (root / cls / f"{j:03d}.png").write_bytes(png_bytes(40 * (i + 1) + j, size))
    return root


def split_folders(root: Path, n_classes: int = 4, per_class: int = 4) -> Path:
    """``root/{train,val,test}/<class>/<image>`` for ``data.dataset=folder`` runs."""
    for split in ("train", "val", "test"):
        image_folder(root / split, {f"{split}{c}": per_class for c in range(n_classes)})
    return root


def folder_train_argv(tmp: Path, root: Path, *extra: str) -> list[str]:
    """``metalearn train`` on a folder dataset, tiny everything (fails before training when bad)."""
    sets = ["data.dataset=folder", f"data.root={root}", "data.train_split=train", "data.val_split=val",
            "data.test_split=test", "data.n_way=2", "data.k_shot=1", "data.n_query=1",
            "data.val_episodes=2", "data.image_size=16", "model.hidden=4", "train.steps=1",
            "train.device=cpu", "train.tensorboard=false", *extra]
    argv = ["train", "--preset", "protonet-omniglot-5w1s", "--out", str(tmp / "run"), "--quiet"]
    for s in sets:
        argv += ["--set", s]
    return argv


SINUSOID = ["train", "--preset", "demo", "--quiet", "--set", "train.steps=2", "--set", "train.meta_batch=2",
            "--set", "model.hidden=[4]", "--set", "train.device=cpu", "--set", "train.tensorboard=false",
            "--set", "data.val_episodes=2"]


def sinusoid_argv(tmp: Path, *sets: str) -> list[str]:
    argv = [*SINUSOID, "--out", str(tmp / "run")]
    for s in sets:
        argv += ["--set", s]
    return argv


def image_run(tmp: Path) -> Path:
    """A run directory (untrained tiny Conv4 ProtoNet on 16x16 grey images) without training."""
    from metalearn.train.checkpoint import save_checkpoint
    from metalearn.train.config import (
        AlgorithmConfig,
        DataConfig,
        ModelConfig,
        RunConfig,
        TrainConfig,
    )
    from metalearn.train.loop import build_algorithm

    run = tmp / "img_run"
    cfg = RunConfig(name="img", data=DataConfig(dataset="folder", root=str(split_folders(tmp / "data")),
                                                n_way=2, k_shot=1, n_query=1, image_size=16, channels=1,
                                                train_split="train", val_split="val", test_split="test",
                                                val_episodes=2, test_episodes=2),
                    model=ModelConfig("conv4", {"hidden": 4, "in_channels": 1}),
                    algorithm=AlgorithmConfig("protonet", {}), train=TrainConfig(device="cpu"))
    torch.manual_seed(0)
    algo = build_algorithm(cfg)
    save_checkpoint(run / "checkpoints", "best", {"model": algo.state_dict()}, step=0, config=cfg.to_dict())
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    return run


def adapt_folders(tmp: Path) -> tuple[Path, Path]:
    support = image_folder(tmp / "support", {"a": 2, "b": 2})
    query = tmp / "query"
    query.mkdir()
    (query / "q.png").write_bytes(png_bytes(90))
    return support, query


def zip_with(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    """A zip with the given members (names written verbatim, even absolute or with ``..``)."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            z.writestr(info, target)
    return path


def omniglot_member(name: str = "a.png") -> str:
    return f"images_background/Alpha/character01/{name}"


def bad_omniglot_root(tmp: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    root = tmp / "data"
    (root / "omniglot").mkdir(parents=True)
    zip_with(root / "omniglot" / "images_background.zip", members, symlinks)
    return root


# ------------------------------------------------------------------------ disk simulations

@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str = "16k", read_only: bool = False) -> Iterator[bool]:
    """Mount a tiny tmpfs at ``path`` (a real full or read-only disk); yields False when mounting
    is not permitted here, or ``RELIABILITY_NO_MOUNT=1`` (the caller then simulates)."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    ok = False
    if os.geteuid() == 0 and not os.environ.get("RELIABILITY_NO_MOUNT"):
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                            capture_output=True).returncode == 0
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", str(path)], capture_output=True)


@contextlib.contextmanager
def failing_writes(path: Path, code: int) -> Iterator[None]:
    """Simulation: creating or writing any file or folder under ``path`` raises ``OSError(code)``
    (``open``/``io.open``/``os.open`` for writing, ``os.mkdir``)."""
    import builtins

    prefix = str(path.resolve())
    real = builtins.open, io.open, os.open, os.mkdir

    def under(p) -> bool:
        return isinstance(p, (str, os.PathLike)) and str(Path(os.fspath(p)).resolve()).startswith(prefix)

    def fail(p):
        raise OSError(code, os.strerror(code), os.fspath(p))

    def fake_open(file, mode="r", *a, **k):
        if under(file) and any(c in mode for c in "wax+"):
            fail(file)
        return real[0](file, mode, *a, **k)

    def fake_os_open(file, flags, *a, **k):
        if under(file) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            fail(file)
        return real[2](file, flags, *a, **k)

    def fake_mkdir(p, *a, **k):
        if under(p):
            fail(p)
        return real[3](p, *a, **k)

    builtins.open, io.open, os.open, os.mkdir = fake_open, fake_open, fake_os_open, fake_mkdir
    try:
        yield
    finally:
        builtins.open, io.open, os.open, os.mkdir = real


@contextlib.contextmanager
def full_disk(path: Path) -> Iterator[None]:
    """Writes under ``path`` fail for lack of space: a real 16 KiB tmpfs when permitted, else
    :func:`failing_writes` with ENOSPC."""
    with tiny_tmpfs(path) as mounted:
        if mounted:
            yield
            return
        with failing_writes(path, errno.ENOSPC):
            yield


@contextlib.contextmanager
def read_only_dir(path: Path) -> Iterator[None]:
    """``path`` is an existing, read-only folder: a read-only tmpfs when permitted (EROFS), mode
    0o555 for a non-root user (EACCES), else :func:`failing_writes` with EACCES."""
    with tiny_tmpfs(path, read_only=True) as mounted:
        if mounted:
            yield
        elif os.geteuid() != 0:
            path.chmod(0o555)
            try:
                yield
            finally:
                path.chmod(0o755)
        else:
            with failing_writes(path, errno.EACCES):
                yield


# ------------------------------------------------------------------------------- the cases

def _image_folder_api(counts, bad: dict[str, bytes] | None = None, **kw):
    def build(tmp: Path):
        from metalearn.data import ImageFolder

        root = image_folder(tmp / "imgs", counts)
        for rel, data in (bad or {}).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        return lambda: ImageFolder(root, image_size=12, channels=1, cache=tmp / "cache", **kw)
    return build


def _corrupt_folder_cli(name: str, data: bytes):
    def build(tmp: Path):
        root = split_folders(tmp / "data")
        (root / "train" / "train0" / name).write_bytes(data)
        return folder_train_argv(tmp, root)
    return build


def _empty_class_cli(tmp: Path) -> list[str]:
    root = split_folders(tmp / "data")
    (root / "train" / "empty").mkdir()
    return folder_train_argv(tmp, root)


def _small_class_cli(tmp: Path) -> list[str]:
    """Class train1 keeps 1 image; the run needs k_shot + n_query = 2 per class."""
    root = split_folders(tmp / "data")
    for p in sorted((root / "train" / "train1").iterdir())[1:]:
        p.unlink()
    return folder_train_argv(tmp, root)


def _sampler(**kw):
    def build(tmp: Path):
        from metalearn.data import ArrayDataset, EpisodeSampler

        ds = ArrayDataset(np.random.default_rng(0).random((30, 3)), np.repeat(np.arange(5), 6))
        args = {"n_way": 3, "k_shot": 2, "n_query": 2, **kw}
        return lambda: EpisodeSampler(ds, **args)
    return build


def _regression_sampler(**kw):
    def build(tmp: Path):
        from metalearn.data import EpisodeSampler, SinusoidTasks

        args = {"n_way": None, "k_shot": 5, "n_query": 5, **kw}
        return lambda: EpisodeSampler(SinusoidTasks(), **args).sample_batch(4)
    return build


def _huge_regression_batch(tmp: Path):
    from metalearn.data import EpisodeSampler, SinusoidTasks

    return lambda: EpisodeSampler(SinusoidTasks(), None, 5, 5).sample_batch(10**10)


def _huge_fixed_episodes(tmp: Path):
    from metalearn.data import ArrayDataset, FixedEpisodes

    ds = ArrayDataset(np.zeros((20, 2), np.float32), np.repeat(np.arange(4), 5))
    return lambda: FixedEpisodes(ds, 2, 1, 1, n_episodes=10**11, seed=0)


def _no_class_folders(tmp: Path):
    from metalearn.data import ImageFolder

    (tmp / "flat").mkdir()
    (tmp / "flat" / "a.png").write_bytes(png_bytes())
    return lambda: ImageFolder(tmp / "flat", cache=tmp / "cache")


def _check_skipped(ds) -> None:
    assert len(ds) == 8 and len(ds.skipped) == 1, f"expected 8 images, 1 skipped: {len(ds)}, {ds.skipped}"


def _check_ignored(ds) -> None:
    assert ds.ignored == 3, f"expected 3 ignored non-image files, got {ds.ignored}"
    assert len(ds) == 6 and ds.num_classes == 2


def _mixed_modes(tmp: Path):
    from metalearn.data import ImageFolder

    root = tmp / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir(parents=True)
    (root / "a" / "grey.png").write_bytes(png_bytes(10, 12, "L"))
    (root / "a" / "rgb_big.png").write_bytes(png_bytes(20, 40, "RGB"))
    (root / "a" / "rgba.png").write_bytes(png_bytes(30, 7, "RGBA"))
    (root / "b" / "palette.png").write_bytes(png_bytes(40, 20, "P"))
    (root / "b" / "bilevel.png").write_bytes(png_bytes(200, 9, "1"))
    (root / "b" / "photo.jpg").write_bytes(jpeg_bytes(50, 33))
    return lambda: (ImageFolder(root, image_size=16, channels=3, cache=tmp / "c3"),
                    ImageFolder(root, image_size=16, channels=1, cache=tmp / "c1"))


def _check_mixed(result) -> None:
    rgb, grey = result
    assert rgb.item_shape == (3, 16, 16) and grey.item_shape == (1, 16, 16)
    x = rgb.gather(torch.arange(len(rgb)))
    assert x.shape == (6, 3, 16, 16) and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def _array(value: float):
    def build(tmp: Path):
        from metalearn.data import ArrayDataset

        x = np.random.default_rng(0).random((12, 3)).astype(np.float32)
        x[7, 1] = value
        return lambda: ArrayDataset(x, np.repeat(np.arange(3), 4))
    return build


def _unsafe_api(members: dict[str, bytes], symlinks=None):
    def build(tmp: Path):
        from metalearn.data.download import safe_members

        path = zip_with(tmp / "evil.zip", members, symlinks)

        def call():
            with zipfile.ZipFile(path) as z:
                return safe_members(z)
        return call
    return build


def _unsafe_cli(members: dict[str, bytes], symlinks=None):
    def build(tmp: Path):
        root = bad_omniglot_root(tmp, members, symlinks)
        return ["prepare-data", "omniglot", "--data-root", str(root)]
    return build


def _checksum_api(tmp: Path):
    from metalearn.data.download import download

    src = tmp / "served.zip"
    zip_with(src, {omniglot_member(): png_bytes()})
    return lambda: download(src.resolve().as_uri(), tmp / "dl" / "images_background.zip", "0" * 32, quiet=True)


def _checksum_cli(tmp: Path):
    """prepare-data downloading from a (local) URL that serves a file with the wrong digest."""
    import metalearn.data.omniglot as omni

    src = tmp / "served"
    src.mkdir()
    zip_with(src / "images_background.zip", {omniglot_member(): png_bytes()})

    @contextlib.contextmanager
    def served():
        old = omni.URL
        omni.URL = src.resolve().as_uri() + "/{part}.zip"
        try:
            yield
        finally:
            omni.URL = old
    (tmp / "root").mkdir()
    return ["prepare-data", "omniglot", "--data-root", str(tmp / "root")], served


def _other_model_cli(tmp: Path):
    run = image_run(tmp)
    meta_path = run / "checkpoints" / "best.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["model"]["options"]["hidden"] = 8
    meta_path.write_text(json.dumps(meta))
    return ["eval", str(run), "--episodes", "2", "--quiet"]


def _damaged_ckpt_cli(damage: str):
    def build(tmp: Path):
        run = image_run(tmp)
        ckpt = run / "checkpoints"
        tensors = next(ckpt.glob("best-*.safetensors"))
        if damage == "truncated-tensors":
            tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])
        elif damage == "truncated-header":
            tensors.write_bytes(tensors.read_bytes()[:5])
        elif damage == "zero-byte-tensors":
            tensors.write_bytes(b"")
        elif damage == "missing-tensors":
            tensors.unlink()
        elif damage == "truncated-json":
            text = (ckpt / "best.json").read_text()
            (ckpt / "best.json").write_text(text[: len(text) // 2])
        elif damage == "zero-byte-json":
            (ckpt / "best.json").write_text("")
        elif damage == "json-not-object":
            (ckpt / "best.json").write_text("[1, 2, 3]")
        elif damage == "json-missing-fields":
            (ckpt / "best.json").write_text(json.dumps({"format": "metalearn-checkpoint/1"}))
        elif damage == "tensors-swapped":  # a complete tensors file from another save
            other = image_run(tmp / "other")
            tensors.write_bytes(next((other / "checkpoints").glob("best-*.safetensors")).read_bytes())
        elif damage == "pickle-as-safetensors":
            torch.save({"w": torch.zeros(2)}, tensors)
        return ["eval", str(run), "--episodes", "2", "--quiet"]
    return build


def _resume_config_cli(content: str):
    def build(tmp: Path):
        run = tmp / "run"
        run.mkdir()
        (run / "config.json").write_text(content)
        return ["train", "--resume", "--out", str(run), "--quiet"]
    return build


def _read_only_run(tmp: Path):
    ro = tmp / "ro"
    argv = [*SINUSOID, "--out", str(ro / "run")]
    return argv, lambda: read_only_dir(ro)


def _read_only_resume(tmp: Path):
    """An existing run whose folder became read-only: resuming must say so, not crash."""
    from metalearn.cli import main

    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main([*SINUSOID, "--out", str(tmp / "ro" / "run")]) == 0
    argv = [*SINUSOID, "--set", "train.steps=4", "--out", str(tmp / "ro" / "run"), "--resume", "--force"]

    @contextlib.contextmanager
    def ctx():
        if os.geteuid() != 0:
            for p in [tmp / "ro" / "run", *(tmp / "ro" / "run").rglob("*")]:
                p.chmod(0o555 if p.is_dir() else 0o444)
            try:
                yield
            finally:
                for p in [tmp / "ro" / "run", *(tmp / "ro" / "run").rglob("*")]:
                    p.chmod(0o755)
        else:
            with failing_writes(tmp / "ro", errno.EACCES):
                yield
    return argv, ctx


def _full_cache_api(tmp: Path):
    from metalearn.data import ImageFolder

    root = image_folder(tmp / "imgs", {"a": 3, "b": 3}, size=40)
    cache = tmp / "full"
    return (lambda: ImageFolder(root, image_size=40, channels=3, cache=cache)), lambda: full_disk(cache)


def _full_cache_cli(tmp: Path):
    root = split_folders(tmp / "data", per_class=6)
    cache = tmp / "full"
    argv = folder_train_argv(tmp, root, "data.image_size=40")

    @contextlib.contextmanager
    def ctx():
        old = os.environ.get("METALEARN_CACHE")
        os.environ["METALEARN_CACHE"] = str(cache)
        try:
            with full_disk(cache):
                yield
        finally:
            if old is None:
                os.environ.pop("METALEARN_CACHE", None)
            else:
                os.environ["METALEARN_CACHE"] = old
    return argv, ctx


def _evil_pickle(tmp: Path) -> Path:
    """A ``.pt`` file whose unpickling would create ``tmp/pwned`` (it must never exist)."""
    marker = tmp / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp / "backbone.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Evil()}, path)
    return path


def _pickle_api(tmp: Path):
    from metalearn.models import BACKBONES
    from metalearn.models.weights import load_backbone

    path = _evil_pickle(tmp)
    backbone = BACKBONES["conv4"](hidden=4)

    def call():
        try:
            return load_backbone(backbone, path)
        finally:
            assert not (tmp / "pwned").exists(), "the planted pickle ran code"
    return call


def _eval_episodes_cli(n: str):
    def build(tmp: Path):
        return ["eval", str(image_run(tmp)), "--episodes", n, "--quiet"]
    return build


def _adapt_cli(kind: str):
    def build(tmp: Path):
        run = image_run(tmp)
        support, query = adapt_folders(tmp)
        if kind == "zero-byte":
            (support / "a" / "empty.png").write_bytes(b"")
        elif kind == "truncated-jpeg":
            (support / "b" / "photo.jpg").write_bytes(jpeg_bytes()[:300])
        elif kind == "empty-class":
            (support / "c").mkdir()
        elif kind == "one-class":
            import shutil

            shutil.rmtree(support / "b")
        elif kind == "regression-run":
            from metalearn.cli import main

            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                assert main([*SINUSOID, "--out", str(tmp / "sin")]) == 0
            run = tmp / "sin"
        return ["adapt", str(run), "--support", str(support), "--query", str(query),
                "--out", str(tmp / "pred.csv")]
    return build


PNG = png_bytes()
JPG = jpeg_bytes()
GOOD = {"a": 4, "b": 4}

@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for one case (a process launched as if by torchrun, or not)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _distributed_cli(env: dict[str, str], *sets: str):
    def build(tmp: Path):
        return sinusoid_argv(tmp, *sets), lambda: environment(**env)
    return build


_RANK1_OF_2 = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": "1"}  # every case fails before the rendezvous


def _empty_memory_api(tmp: Path):
    from metalearn.algorithms.warm_start import TaskMemory

    return lambda: TaskMemory().query(torch.zeros(8), k=1)


def _memory_dim_api(tmp: Path):
    from metalearn.algorithms.warm_start import TaskMemory

    memory = TaskMemory()
    memory.add(torch.zeros(3, 8), {"w": torch.zeros(3, 2)})
    return lambda: memory.query(torch.zeros(16), k=1)


def _one_shot_std_api(tmp: Path):
    from metalearn.algorithms.task_embedding import class_statistics_embedding

    return lambda: class_statistics_embedding(torch.randn(5, 8), torch.arange(5), 5, stats=("mean", "std"))


CASES: list[Case] = [
    # ---- images: truncated, corrupt, zero-byte; folders: empty class, too-small class
    Case("truncated-png", "api", _image_folder_api(GOOD, {"a/bad.png": PNG[: len(PNG) // 2]}),
         ValueError, r"bad\.png.*Remove or replace the file"),
    Case("truncated-jpeg", "api", _image_folder_api(GOOD, {"b/bad.jpg": JPG[: len(JPG) // 3]}),
         ValueError, r"bad\.jpg.*Remove or replace the file"),
    Case("corrupt-png-body", "api", _image_folder_api(GOOD, {"a/bad.png": PNG[:16] + bytes(200)}),
         ValueError, r"bad\.png.*Remove or replace the file"),
    Case("not-an-image-with-png-name", "api", _image_folder_api(GOOD, {"a/notes.png": b"hello world\n"}),
         ValueError, r"notes\.png.*Remove or replace the file"),
    Case("zero-byte-image", "api", _image_folder_api(GOOD, {"b/empty.png": b""}),
         ValueError, r"empty\.png.*Remove or replace the file"),
    Case("truncated-png-skipped", "api", _image_folder_api(GOOD, {"a/bad.png": PNG[:40]}, skip_corrupt=True),
         None, check=lambda ds: _check_skipped(ds)),
    Case("truncated-png", "cli", _corrupt_folder_cli("bad.png", PNG[: len(PNG) // 2]), fix=r"bad\.png.*Remove or replace"),
    Case("zero-byte-image", "cli", _corrupt_folder_cli("empty.png", b""), fix=r"empty\.png.*Remove or replace"),
    Case("empty-class", "api", _image_folder_api(GOOD, {"c/readme.txt": b"x"}), ValueError,
         r"holds no images: add images or remove the folder"),
    Case("empty-class", "cli", _empty_class_cli, fix=r"empty holds no images: add images or remove the folder"),
    Case("no-class-folders", "api", _no_class_folders, FileNotFoundError, r"has no class folders: expected"),
    Case("missing-root", "cli", lambda tmp: folder_train_argv(tmp, tmp / "nowhere"), fix=r"does not exist"),
    Case("class-smaller-than-k+q", "cli", _small_class_cli,
         fix=r"class 'train1' has only 1 examples.*lower k_shot or n_query"),
    # ---- accepted with a count / converted
    Case("non-image-files-ignored", "api", _image_folder_api(
        {"a": 3, "b": 3}, {"a/notes.txt": b"x", "b/.DS_Store": b"\0", "b/labels.csv": b"1,2"}),
         None, check=_check_ignored),
    Case("mixed-modes-and-sizes-converted", "api", _mixed_modes, None, check=_check_mixed),
    # ---- task shape: n_way / k_shot / n_query zero, negative, absurd, wrong type
    Case("n_way=0", "api", _sampler(n_way=0), ValueError, r"n_way must be at least 2"),
    Case("n_way=-3", "api", _sampler(n_way=-3), ValueError, r"n_way must be at least 2"),
    Case("n_way=1", "api", _sampler(n_way=1), ValueError, r"n_way must be at least 2"),
    Case("n_way=10**9", "api", _sampler(n_way=10**9), ValueError, r"lower n_way to at most 5"),
    Case("k_shot=0", "api", _sampler(k_shot=0), ValueError, r"k_shot must be at least 1"),
    Case("k_shot=-1", "api", _sampler(k_shot=-1), ValueError, r"k_shot must be at least 1"),
    Case("k_shot=10**9", "api", _sampler(k_shot=10**9), ValueError, r"lower k_shot or n_query to at most 6"),
    Case("n_query=0", "api", _sampler(n_query=0), ValueError, r"n_query must be at least 1"),
    Case("n_query=-7", "api", _sampler(n_query=-7), ValueError, r"n_query must be at least 1"),
    Case("k_shot=2.5", "api", _sampler(k_shot=2.5), TypeError, r"k_shot must be an int"),
    Case("n_way='5'", "api", _sampler(n_way="5"), TypeError, r"n_way must be an int"),
    Case("regression n_way=5", "api", _regression_sampler(n_way=5), ValueError, r"pass n_way=None"),
    Case("regression k_shot=10**9", "api", _regression_sampler(k_shot=10**9), ValueError,
         r"lower k_shot or n_query"),
    Case("data.n_way=0", "cli", lambda tmp: folder_train_argv(tmp, split_folders(tmp / "d"), "data.n_way=0"),
         fix=r"n_way must be at least"),
    Case("data.k_shot=-1", "cli", lambda tmp: sinusoid_argv(tmp, "data.k_shot=-1"), fix=r"k_shot must be at least 1"),
    Case("data.n_query=0", "cli", lambda tmp: sinusoid_argv(tmp, "data.n_query=0"), fix=r"n_query must be at least 1"),
    Case("data.n_way=1000", "cli", lambda tmp: folder_train_argv(tmp, split_folders(tmp / "d"), "data.n_way=1000"),
         fix=r"lower n_way to at most 4"),
    Case("data.k_shot=10**9 (regression)", "cli", lambda tmp: sinusoid_argv(tmp, "data.k_shot=1000000000"),
         fix=r"lower k_shot or n_query"),
    Case("sample_batch(10**10) (regression)", "api", _huge_regression_batch, ValueError, r"GiB, more than this machine's .* memory: lower the number of tasks"),
    Case("FixedEpisodes(n_episodes=10**11)", "api", _huge_fixed_episodes, ValueError, r"GiB, more than this machine's .* memory: lower the number of tasks"),
    Case("train.meta_batch=10**10", "cli", lambda tmp: sinusoid_argv(tmp, "train.meta_batch=10000000000"),
         fix=r"memory: lower the number of tasks per batch \(train\.meta_batch"),
    Case("data.image_size too small for conv4", "cli", lambda tmp: folder_train_argv(
        tmp, split_folders(tmp / "d"), "data.image_size=4", "data.eval_n_way=2", "data.eval_n_query=1"),
         fix=r"model cannot take this data.*match data\.image_size and data\.channels"),
    Case("data.channels=3 into a 1-channel conv4", "cli", lambda tmp: folder_train_argv(
        tmp, split_folders(tmp / "d"), "data.image_size=16", "data.channels=3", "data.eval_n_way=2",
        "data.eval_n_query=1"), fix=r"model cannot take this data.*model\.in_channels"),
    Case("data.k_shot=1.5", "cli", lambda tmp: sinusoid_argv(tmp, "data.k_shot=1.5"), fix=r"data.k_shot must be an integer"),
    # ---- configs: unknown key, wrong type, not data
    Case("unknown-key", "cli", lambda tmp: sinusoid_argv(tmp, "train.stepz=3"), fix=r"unknown config key.*train\.steps"),
    Case("unknown-section", "cli", lambda tmp: sinusoid_argv(tmp, "trian.steps=3"), fix=r"unknown config key"),
    Case("wrong-type-int", "cli", lambda tmp: sinusoid_argv(tmp, "train.steps=abc"), fix=r"train\.steps must be an integer"),
    Case("wrong-type-list", "cli", lambda tmp: sinusoid_argv(tmp, "model.hidden=wide"), fix=r"model\.hidden"),
    Case("wrong-type-bool", "cli", lambda tmp: sinusoid_argv(tmp, "train.tensorboard=maybe"), fix=r"must be true or false"),
    Case("not-key=value", "cli", lambda tmp: sinusoid_argv(tmp, "train.steps"), fix=r"is not key=value"),
    Case("python-expression-is-not-run", "cli",
         lambda tmp: sinusoid_argv(tmp, f"train.steps=__import__('os').system('touch {tmp}/pwned')"),
         fix=r"train\.steps must be an integer"),
    Case("config.json unknown key", "cli", _resume_config_cli(json.dumps({"train": {"stepz": 3}})),
         fix=r"unknown config key 'train\.stepz'"),
    Case("config.json wrong type", "cli", _resume_config_cli(json.dumps({"train": {"steps": "many"}})),
         fix=r"train\.steps must be an integer"),
    Case("config.json truncated", "cli", _resume_config_cli('{"train": {"steps": 3'),
         fix=r"config\.json.*(not valid JSON|damaged)"),
    # ---- checkpoints: another model, truncated, damaged, not ours
    Case("checkpoint-from-another-model", "cli", _other_model_cli, fix=r"different model.*use the config saved with it"),
    *(Case(f"checkpoint-{d}", "cli", _damaged_ckpt_cli(d), fix=r"checkpoint|damaged|incomplete")
      for d in ("truncated-tensors", "truncated-header", "zero-byte-tensors", "missing-tensors",
                "truncated-json", "zero-byte-json", "json-not-object", "json-missing-fields",
                "tensors-swapped", "pickle-as-safetensors")),
    Case("eval-no-run-dir", "cli", lambda tmp: ["eval", str(tmp / "nope")], fix=r"does not exist"),
    Case("eval --episodes 0", "cli", _eval_episodes_cli("0"), fix=r"--episodes must be at least 1"),
    Case("planted-pickle-backbone", "api", _pickle_api, Exception, r"(?i)weights_only|unsupported global|pickle"),
    # ---- adapt inputs
    Case("adapt-zero-byte-support", "cli", _adapt_cli("zero-byte"), fix=r"empty\.png.*fix or remove the file"),
    Case("adapt-truncated-jpeg", "cli", _adapt_cli("truncated-jpeg"), fix=r"photo\.jpg.*fix or remove the file"),
    Case("adapt-empty-class", "cli", _adapt_cli("empty-class"), fix=r"holds no images: add some or remove it"),
    Case("adapt-one-class", "cli", _adapt_cli("one-class"), fix=r"single class"),
    Case("adapt-regression-run", "cli", _adapt_cli("regression-run"), fix=r"regression"),
    # ---- disks: read-only run directory, full data/cache disk
    Case("read-only-run-dir", "cli", _read_only_run, fix=r"writable.*--out"),
    Case("read-only-run-dir-resume", "cli", _read_only_resume, fix=r"writable.*--out"),
    Case("full-disk-cache", "api", _full_cache_api, OSError, r"(?i)no space left.*METALEARN_CACHE"),
    Case("full-disk-cache", "cli", _full_cache_cli, fix=r"(?i)no space left.*METALEARN_CACHE"),
    # ---- arrays
    Case("ArrayDataset NaN", "api", _array(float("nan")), ValueError, r"non-finite.*first row 7.*impute or drop"),
    # ---- distributed settings (issue 6) and task memories (issue 9)
    Case("meta-batch-not-divisible-by-world", "cli",
         _distributed_cli(_RANK1_OF_2, "train.meta_batch=3"), fix=r"not a multiple of 2 processes.*meta_batch=2 or 4"),
    Case("nccl-without-cuda", "cli", _distributed_cli({**_RANK1_OF_2, "METALEARN_DIST_BACKEND": "nccl"}),
         fix=r"nccl needs CUDA.*METALEARN_DIST_BACKEND=gloo"),
    Case("world-size-without-master-addr", "cli", _distributed_cli({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "",
                                                                    "MASTER_PORT": ""}),
         fix=r"MASTER_ADDR and MASTER_PORT are not.*launch with torchrun"),
    Case("task-memory-queried-empty", "api", _empty_memory_api, ValueError, r"memory is empty: add .*build_memory"),
    Case("task-embedding-dimension-mismatch", "api", _memory_dim_api, ValueError,
         r"dimension 16 but this memory stores .* dimension 8: embed new tasks with the same backbone"),
    Case("std-embedding-one-shot", "api", _one_shot_std_api, ValueError, r"at least 2 support examples.*k_shot >= 2"),
    Case("ArrayDataset +inf", "api", _array(float("inf")), ValueError, r"non-finite.*first row 7.*impute or drop"),
    Case("ArrayDataset -inf", "api", _array(float("-inf")), ValueError, r"non-finite.*first row 7.*impute or drop"),
    # ---- archives: checksum, escaping members
    Case("download-wrong-checksum", "api", _checksum_api, ValueError, r"checksum mismatch.*Download it again"),
    Case("download-wrong-checksum", "cli", _checksum_cli, fix=r"checksum mismatch.*Download it again"),
    Case("not-omniglot-archive", "cli", lambda tmp: ["prepare-data", "omniglot", "--data-root", str(
        bad_omniglot_root(tmp, {omniglot_member(): PNG}))], fix=r"incomplete or not Omniglot: remove it"),
    Case("archive-absolute-path", "api", _unsafe_api({"/tmp/evil.png": PNG}), ValueError, r"outside the target folder"),
    Case("archive-dotdot-path", "api", _unsafe_api({"images_background/../../evil.png": PNG}), ValueError,
         r"outside the target folder"),
    Case("archive-drive-letter", "api", _unsafe_api({"C:/evil.png": PNG}), ValueError, r"outside the target folder"),
    Case("archive-symlink", "api", _unsafe_api({}, {"images_background/link.png": "/etc/passwd"}), ValueError,
         r"symbolic link"),
    Case("archive-absolute-path", "cli", _unsafe_cli({"/images_background/A/c/evil.png": PNG}),
         fix=r"outside the target folder.*refusing"),
    Case("archive-dotdot-path", "cli", _unsafe_cli({omniglot_member("../../../../evil.png"): PNG}),
         fix=r"outside the target folder.*refusing"),
    Case("archive-symlink", "cli", _unsafe_cli({omniglot_member(): PNG}, {omniglot_member("l.png"): "/etc/passwd"}),
         fix=r"symbolic link.*refusing"),
]


def case_id(case: Case) -> str:
    return f"{case.surface}:{case.name}"


def run_case(case: Case, tmp: Path) -> tuple[bool, str]:
    """Run one case in the empty folder ``tmp``; ``(ok, detail)``."""
    built = case.build(tmp)
    ctx = contextlib.nullcontext
    if isinstance(built, tuple):
        built, ctx = built[0], built[1]
    if case.surface == "cli":
        from metalearn.cli import main

        out, err = io.StringIO(), io.StringIO()
        try:
            with ctx(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                code = main([str(a) for a in built])
        except BaseException as e:  # escaping main = a traceback for the user
            return False, f"traceback: {type(e).__name__}: {e}"
        text = err.getvalue()
        if code != 2:
            return False, f"exit {code} (expected 2): {text.strip()[-400:]}"
        if "Traceback" in text:
            return False, "traceback on stderr"
        if not re.search(case.fix, text, re.S):
            return False, f"message does not name the fix ({case.fix!r}): {text.strip()[-400:]}"
        if (tmp / "pwned").exists():
            return False, "code from the input was executed"
        return True, text.strip().splitlines()[-1] if text.strip() else ""
    try:
        with ctx(), warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            result = built()
    except BaseException as e:
        if (tmp / "pwned").exists():
            return False, "code from the input was executed"
        if case.expect is None or not isinstance(e, case.expect):
            return False, f"unexpected {type(e).__name__}: {e}"
        if not re.search(case.fix, str(e), re.S):
            return False, f"message does not name the fix ({case.fix!r}): {e}"
        return True, f"{type(e).__name__}: {e}"
    if case.expect is not None:
        return False, f"accepted; expected {case.expect}"
    try:
        if case.check is not None:
            case.check(result)
    except AssertionError as e:
        return False, f"accepted but wrong: {e}"
    return True, "accepted"
