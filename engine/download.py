"""A hub model's files fetched before loading, with progress that people and servers can see.

A real preset is about 40 GB from three hub repositories. Left to `from_pretrained`, the first run
fetches them with per-repository bars (or none, off a terminal) and, when the hub cannot be
reached, waits through retries and fails with `OSError: ... config.json`. So the engine fetches
first, with huggingface_hub's own `snapshot_download`: it lists exactly the files the stage will
load (their sizes known up front, so there is one total for the whole model), downloads them into
the usual hub cache (resuming partial files), counts the bytes through the `tqdm_class` hook that
`snapshot_download` offers, and hands `FramePackModel.load` the local snapshot directories. A
`DownloadProgress` holds the figures (bytes, rate, time left) for a terminal bar and for a server
to poll; an unreachable hub gives one `ModelUnavailable` line saying how to fetch the model.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath

from huggingface_hub import HfApi, snapshot_download, try_to_load_from_cache
from huggingface_hub import errors as hub_errors
from huggingface_hub.utils import tqdm as hub_tqdm
from tqdm import tqdm

from .errors import InputError
from .presets import ModelSource

#: Seconds to wait for the hub's answer about a repository before calling it unreachable.
HUB_TIMEOUT_S = 10.0
#: Weight formats other than safetensors, skipped in a folder that has safetensors (as diffusers does).
OTHER_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".onnx", ".gguf")
#: What the hub library raises when it cannot answer: offline mode, connection and HTTP errors
#: (its `errors.HTTPError` is the base of both its own HTTP errors and its client's transport errors).
UNREACHABLE = (hub_errors.OfflineModeIsEnabled, hub_errors.HTTPError, OSError)


class ModelUnavailable(InputError):
    """The model's files are neither in the local cache nor fetchable: one line says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__("model_unavailable", message)


@dataclass
class DownloadStatus:
    """A snapshot of a download, as plain data (`to_dict` for JSON)."""

    model: str
    #: idle (nothing to fetch yet), checking, downloading, done, failed
    state: str
    total_bytes: int
    done_bytes: int
    bytes_per_second: float | None
    seconds_left: float | None
    error: str | None

    def to_dict(self) -> dict:
        return asdict(self)


class DownloadProgress:
    """One model's download, safe to read from any thread while the hub's workers update it.

    `show` draws one terminal bar for the whole model (bytes, rate, time left).
    """

    def __init__(self, show: bool = True) -> None:
        self.show = show
        self._lock = threading.Lock()
        self._model, self._state, self._error = "", "idle", None
        self._total = self._done = self._resumed_from = 0
        self._began: float | None = None
        self._bar: tqdm | None = None

    def checking(self, model: str) -> None:
        with self._lock:
            self._model, self._state = model, "checking"

    def start(self, total: int, cached: int) -> None:
        """`total` bytes to have, `cached` of them already in the cache."""
        with self._lock:
            self._state, self._total, self._done, self._resumed_from = "downloading", total, cached, cached
            self._began = time.monotonic()
            if self.show:
                self._bar = tqdm(total=total, initial=cached, unit="B", unit_scale=True, unit_divisor=1024,
                                 desc=f"downloading {self._model}", dynamic_ncols=True)

    def advance(self, count: int) -> None:
        with self._lock:
            self._done += count
            if self._bar is not None:
                self._bar.update(count)

    def finish(self) -> None:
        """Every file is in the cache now, including any another process fetched meanwhile (the
        hub library waits on its lock, and counts nothing for it)."""
        with self._lock:
            self._state, self._done = "done", self._total
            if self._bar is not None:
                self._bar.update(self._total - self._bar.n)
            self._close_bar()

    def fail(self, message: str) -> None:
        with self._lock:
            self._state, self._error = "failed", message
            self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def status(self) -> DownloadStatus:
        with self._lock:
            rate = left = None
            if self._state == "downloading" and self._began is not None:
                elapsed = time.monotonic() - self._began
                fetched = self._done - self._resumed_from
                if elapsed > 0 and fetched > 0:
                    rate = fetched / elapsed
                    left = max(0, self._total - self._done) / rate
            return DownloadStatus(self._model, self._state, self._total, self._done, rate, left, self._error)

    def bar_class(self) -> type:
        """A `tqdm_class` for `snapshot_download` that adds the bytes written to the cache to this
        progress (its aggregate bar named `huggingface_hub.snapshot_download`, which also counts the
        resumed part of partial files); the hub's own bars render nowhere, this one draws."""
        progress = self

        class Counting(hub_tqdm):
            def __init__(self, *args, **kwargs) -> None:
                self._counts = kwargs.get("name") == "huggingface_hub.snapshot_download"
                kwargs.update(file=io.StringIO(), disable=False)
                super().__init__(*args, **kwargs)

            def update(self, n: int | float | None = 1) -> bool | None:
                if self._counts and n:
                    progress.advance(int(n))
                return super().update(n)

        return Counting


@dataclass(frozen=True)
class HubPart:
    """Files one hub repository must provide: `folders` (or, with `root`, its top-level files)."""

    field: str
    repo: str
    folders: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    root: bool = False

    def wanted(self, path: str) -> bool:
        parts = PurePosixPath(path).parts
        if self.root:
            return len(parts) == 1
        return path in self.files or (len(parts) == 2 and parts[0] in self.folders)


def hub_parts(source: ModelSource, parts: tuple[str, ...]) -> list[HubPart]:
    """The hub repositories (not local directories) that loading `parts` of `source` reads, and
    what it reads from each: the same components `FramePackModel.load` asks `from_pretrained` for."""
    wanted = []
    folders = ["scheduler"]
    if "text" in parts:
        folders += ["text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"]
    if "vae" in parts:
        folders.append("vae")
    if "transformer" in parts and not source.transformer:
        folders.append("transformer")
    if "image" in parts and not source.image_encoder:
        folders += ["image_encoder", "feature_extractor"]
    wanted.append(HubPart("base", source.base, tuple(folders), ("model_index.json",)))
    if source.transformer and "transformer" in parts:
        wanted.append(HubPart("transformer", source.transformer, root=True))
    if source.image_encoder and "image" in parts:
        wanted.append(HubPart("image_encoder", source.image_encoder, ("image_encoder", "feature_extractor")))
    return [part for part in wanted if not Path(part.repo).expanduser().is_dir()]


def select_files(part: HubPart, sizes: dict[str, int]) -> dict[str, int]:
    """The part's files among a repository's (path -> size), safetensors only where a folder has them."""
    chosen = {path: size for path, size in sizes.items() if part.wanted(path)}
    with_safetensors = {str(PurePosixPath(p).parent) for p in chosen if p.endswith(".safetensors")}
    return {p: s for p, s in chosen.items()
            if not (p.endswith(OTHER_WEIGHTS) and str(PurePosixPath(p).parent) in with_safetensors)}


def how_to_fetch(name: str, parts: list[HubPart]) -> str:
    commands = "; ".join(
        f"hf download {part.repo}" + ("" if part.root else " --include " + " ".join(
            [*part.files, *(f"'{folder}/*'" for folder in part.folders)]))
        for part in parts
    )
    return (f"pre-download it where the hub is reachable ({commands}; the same cache, HF_HOME, must be used here) "
            f"or pass --model a local directory in the layout HunyuanVideoFramepackPipeline.save_pretrained writes")


def ensure_local(
    name: str,
    source: ModelSource,
    parts: tuple[str, ...],
    progress: DownloadProgress | None = None,
    endpoint: str | None = None,
    timeout: float = HUB_TIMEOUT_S,
) -> ModelSource:
    """`source` with every hub repository replaced by its local snapshot, fetching what is missing.

    Offline (HF_HUB_OFFLINE, or the hub does not answer within `timeout`) a complete cache is used
    as it is; anything missing raises `ModelUnavailable`, naming the model and how to fetch it.
    """
    wanted = hub_parts(source, parts)
    if not wanted:
        return source
    progress = progress or DownloadProgress()
    progress.checking(name)
    api = HfApi(endpoint=endpoint)
    infos = {}
    for part in wanted:
        try:
            infos[part.repo] = api.model_info(part.repo, files_metadata=True, timeout=timeout)
        except hub_errors.RepositoryNotFoundError:
            message = (f"model {name}: the hub has no repository {part.repo} that this account may read (a private "
                       "or gated one needs `hf auth login`)")
            progress.fail(message)
            raise ModelUnavailable(message) from None
        except UNREACHABLE as exc:
            return _from_cache(name, source, wanted, progress, exc)
    files = {part.repo: select_files(part, {s.rfilename: s.size or 0 for s in infos[part.repo].siblings})
             for part in wanted}
    total = sum(size for chosen in files.values() for size in chosen.values())
    cached = sum(size for part in wanted for path, size in files[part.repo].items()
                 if isinstance(try_to_load_from_cache(part.repo, path, revision=infos[part.repo].sha), str))
    progress.start(total, cached)
    local = {}
    try:
        for part in wanted:
            local[part.field] = snapshot_download(
                part.repo, revision=infos[part.repo].sha, allow_patterns=list(files[part.repo]),
                endpoint=endpoint, tqdm_class=progress.bar_class(), etag_timeout=timeout,
            )
    except UNREACHABLE as exc:
        message = (f"model {name}: the download stopped ({type(exc).__name__}: {exc}); run again to resume, or "
                   + how_to_fetch(name, wanted))
        progress.fail(message)
        raise ModelUnavailable(message) from None
    progress.finish()
    return replace(source, **local)


def _from_cache(name: str, source: ModelSource, wanted: list[HubPart], progress: DownloadProgress,
                cause: BaseException) -> ModelSource:
    """Offline: the cached snapshots, if every repository has one."""
    local = {}
    for part in wanted:
        try:
            local[part.field] = snapshot_download(part.repo, local_files_only=True)
        except (hub_errors.LocalEntryNotFoundError, FileNotFoundError, *UNREACHABLE):
            reason = "the hub is offline (HF_HUB_OFFLINE)" if isinstance(cause, hub_errors.OfflineModeIsEnabled) \
                else f"the hub cannot be reached ({type(cause).__name__})"
            message = f"model {name} is not in the local cache and {reason}: {how_to_fetch(name, wanted)}"
            progress.fail(message)
            raise ModelUnavailable(message) from None
    progress.finish()
    return replace(source, **local)
