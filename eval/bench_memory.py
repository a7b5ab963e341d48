"""Peak memory of a transplant at the 7B shape, against the bound the design promises.

The requirement this benchmark demonstrates:

    "A benchmark transplants a synthetic 7B-shaped checkpoint (d=4096, vocab 32000 -> 151646, a few
    layers suffice to show the streaming) and records peak RSS; it must stay under 3x the size of the
    embedding matrices involved plus one shard."

    python -m transplant.eval.bench_memory [--workdir DIR] [--json OUT] [--method omp|fvt] [--layers N] [--keep]

(`--method` defaults to fvt, which needs no donor weights and finishes in about a minute; omp at
this shape is dominated by the OMP solve: ~11 min with --k 1 on one thread of a busy 2-core machine.)

What it does:

1. writes a synthetic base checkpoint: Mistral-7B shape (hidden 4096, intermediate 14336, 32 heads,
   8 kv heads, untied, bf16), `--layers` layers (default 4), random weights generated tensor by tensor
   and written with safetensors in ~2 GiB shards plus model.safetensors.index.json. No model is
   instantiated (tensor names and shapes come from a meta-device model), so building holds at most
   one shard. Tokenizer: Mistral v1 (32000, offline name `mistral-v1`).
2. the donor tokenizer: Qwen2's 151646 ids (the Qwen2.5 tokenizer without the 19 tokens Qwen2.5
   appended after id 151645, i.e. Qwen2's own). For `--method omp` also a synthetic donor checkpoint
   of that vocabulary (Qwen2.5-7B shape: hidden 3584, untied, bf16, 1 layer: only its embeddings are
   read); for `fvt` the donor is the tokenizer folder alone.
3. runs `transplant` in a subprocess and samples the RSS of it and its children every 50 ms
   (psutil), plus the kernel's exact high-water mark (`ru_maxrss` from wait4). By default the CLI
   runs through a thin wrapper (`traced_cli`) that prints a marker when each pipeline stage starts,
   so the peak is attributed to a stage; `--plain` runs `python -m transplant.cli` unwrapped.
4. bound = 3 x (bytes of every embedding matrix involved, each in its stored dtype: base input +
   output, donor input + output when the method reads them, new input + output) + the largest base
   shard. PASS when the peak RSS (the larger of the sampled and the kernel peak) stays under it.
5. checks the output without loading it: config vocab_size == donor vocab size, same shard files,
   index and tensor names as the base, embeddings (V_donor, d) in the base dtype, a few
   non-embedding tensors byte-identical to the base (sha256 of their byte ranges in the files), and
   a few shared-token rows equal to the base rows they came from.

A safety cap (`--rss-cap`, default: memory available at start minus 1.5 GiB) kills the transplant
before it can push a shared machine into swap or the OOM killer; a killed run is a FAIL and says so.
The functions take every size as a parameter, so tests run the same path on a tiny configuration.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

GiB = 1024**3
STAGE_MARK = "[bench-stage] "


# ---------------------------------------------------------------- configuration


@dataclass
class ModelShape:
    """A decoder-only architecture's sizes, as transformers config fields."""

    model_type: str
    architecture: str
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    layers: int
    extra: dict = field(default_factory=dict)  # other config fields (rope, eps, ...)


def mistral_7b(layers: int = 4) -> ModelShape:
    return ModelShape("mistral", "MistralForCausalLM", 4096, 14336, 32, 8, layers,
                      {"rms_norm_eps": 1e-5, "max_position_embeddings": 32768, "sliding_window": 4096})


def qwen2_7b(layers: int = 1) -> ModelShape:
    return ModelShape("qwen2", "Qwen2ForCausalLM", 3584, 18944, 28, 4, layers,
                      {"rms_norm_eps": 1e-6, "max_position_embeddings": 32768})


@dataclass
class BenchConfig:
    base: ModelShape
    donor: ModelShape  # only built for methods that read donor embeddings
    base_tokenizer: list[str]  # candidates, first usable wins: offline names or folders/tokenizer.json
    donor_tokenizer: list[str]
    base_vocab: int | None = 32000  # trim the base tokenizer to this many ids (None: as is)
    donor_vocab: int | None = 151646
    shard_bytes: int = 2 * GiB
    k: int = 4  # OMP anchors per token
    batch_size: int | None = None  # OMP batch (None: the method's default)
    seed: int = 0


def seven_b_config(layers: int = 4, k: int = 4) -> BenchConfig:
    return BenchConfig(
        base=mistral_7b(layers), donor=qwen2_7b(1),
        base_tokenizer=["mistral-v1", "/tmp/pk/smol"],  # the fallback is trimmed to 32000
        donor_tokenizer=["qwen2", "/tmp/pk/qwen"],
        k=k,
    )


# ---------------------------------------------------------------- tokenizers


def find_tokenizer(candidates: list[str]) -> Path:
    """The first candidate that gives a folder with tokenizer.json: an existing folder or
    tokenizer.json file, else a name `transplant.sources.resolve` knows offline."""
    tried = []
    for spec in candidates:
        path = Path(spec).expanduser()
        if path.is_file() and path.name == "tokenizer.json":
            return path.parent
        if path.is_dir() and (path / "tokenizer.json").is_file():
            return path
        if path.exists() or "/" in spec:
            tried.append(f"{spec}: no tokenizer.json")
            continue
        try:
            from transplant.sources import resolve

            folder = resolve(spec, need_weights=False).path
        except Exception as error:  # resolve is optional here: any failure means try the next one
            tried.append(f"{spec}: {type(error).__name__}: {error}")
            continue
        if (folder / "tokenizer.json").is_file():
            return folder
        tried.append(f"{spec}: resolved to {folder} without tokenizer.json")
    raise FileNotFoundError("no usable tokenizer among the candidates:\n  " + "\n  ".join(tried))


def trim_tokenizer_spec(spec: dict, size: int) -> dict:
    """tokenizer.json keeping only ids < size: added tokens and BPE vocabulary entries past it, and
    merges that produce or use a dropped piece, go. Qwen2.5's tokenizer trimmed to 151646 is Qwen2's."""
    spec = json.loads(json.dumps(spec))
    spec["added_tokens"] = [a for a in spec.get("added_tokens", []) if a["id"] < size]
    model = spec["model"]
    if isinstance(model.get("vocab"), dict):
        model["vocab"] = {piece: i for piece, i in model["vocab"].items() if i < size}
        if model.get("type") == "BPE" and "merges" in model:
            vocab = model["vocab"]
            kept = []
            for merge in model["merges"]:
                a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
                if a in vocab and b in vocab and a + b in vocab:
                    kept.append(merge)
            model["merges"] = kept
    elif isinstance(model.get("vocab"), list):  # Unigram: ids are list positions
        model["vocab"] = model["vocab"][:size]
    return spec


def prepare_tokenizer(source: Path, dest: Path, size: int | None) -> int:
    """Copy a tokenizer folder's files into `dest`, trimmed to `size` ids; returns the id count
    `transplant.vocab.load_vocab` sees (max id + 1)."""
    from tokenizers import Tokenizer

    dest.mkdir(parents=True, exist_ok=True)
    spec = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    if size is not None:
        spec = trim_tokenizer_spec(spec, size)
    text = json.dumps(spec, ensure_ascii=False)
    Tokenizer.from_str(text)  # fails here, not in the transplant, if trimming broke it
    (dest / "tokenizer.json").write_text(text, encoding="utf-8")
    config_path = source / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if size is not None and isinstance(config.get("added_tokens_decoder"), dict):
        config["added_tokens_decoder"] = {k: v for k, v in config["added_tokens_decoder"].items() if int(k) < size}
    for key in ("auto_map", "is_local", "local_files_only", "name_or_path", "vocab_file", "merges_file", "tokenizer_file"):
        config.pop(key, None)
    config["tokenizer_class"] = "TokenizersBackend"  # loads tokenizer.json as is (see transplant.sources)
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    if (source / "chat_template.jinja").is_file():
        shutil.copy2(source / "chat_template.jinja", dest / "chat_template.jinja")
    ids = [i for i in spec["model"]["vocab"].values()] if isinstance(spec["model"]["vocab"], dict) else [len(spec["model"]["vocab"]) - 1]
    ids += [a["id"] for a in spec.get("added_tokens", [])]
    return max(ids) + 1


# ---------------------------------------------------------------- synthetic checkpoints


def model_config(shape: ModelShape, vocab: int, tokenizer_dir: Path):
    """A transformers config for `shape`, untied, bf16, with bos/eos ids from the tokenizer."""
    from tokenizers import Tokenizer
    from transformers import AutoConfig

    tok_config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    ids = {}
    for role in ("bos", "eos", "pad"):
        token = tok_config.get(f"{role}_token")
        token = token.get("content") if isinstance(token, dict) else token
        if token is not None and tokenizer.token_to_id(token) is not None:
            ids[f"{role}_token_id"] = tokenizer.token_to_id(token)
    head_dim = shape.hidden // shape.heads
    config = AutoConfig.for_model(
        shape.model_type, vocab_size=vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, num_hidden_layers=shape.layers,
        head_dim=head_dim, tie_word_embeddings=False, **shape.extra, **ids,
    )
    config.architectures = [shape.architecture]
    config.dtype = "bfloat16"
    return config


def tensor_specs(config) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every stored tensor, in state-dict order, from a model built on the meta
    device: nothing is allocated, and the names are those transformers will look for."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return [(name, tuple(t.shape)) for name, t in model.state_dict().items()]


def plan_shards(specs: list[tuple[str, tuple[int, ...]]], itemsize: int, shard_bytes: int) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Consecutive tensors grouped into shards of at most `shard_bytes` (a larger tensor gets its own),
    as `save_pretrained` does."""
    shards: list[list] = [[]]
    size = 0
    for name, shape in specs:
        n = _numel(shape) * itemsize
        if shards[-1] and size + n > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += n
    return shards


def write_synthetic_checkpoint(folder: Path, shape: ModelShape, tokenizer_dir: Path, vocab: int,
                               shard_bytes: int, seed: int = 0) -> dict:
    """A random bf16 checkpoint of `shape` written shard by shard; returns a summary. Reused when
    `folder` already holds one built from the same parameters (the summary is its marker)."""
    import torch
    from safetensors.torch import save_file

    key = {"shape": asdict(shape), "vocab": vocab, "shard_bytes": shard_bytes, "seed": seed,
           "tokenizer": hashlib.sha256((tokenizer_dir / "tokenizer.json").read_bytes()).hexdigest()[:16]}
    marker = folder / "synthetic.json"
    if marker.is_file():
        summary = json.loads(marker.read_text())
        if summary.get("key") == key and all((folder / s).is_file() for s in summary["shards"]):
            summary["reused"] = True
            return summary
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    config = model_config(shape, vocab, tokenizer_dir)
    specs = tensor_specs(config)
    groups = plan_shards(specs, 2, shard_bytes)
    names = ["model.safetensors"] if len(groups) == 1 else [
        f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    generator = torch.Generator().manual_seed(seed)
    weight_map, total = {}, 0
    clock = time.perf_counter()
    for shard_name, group in zip(names, groups):
        tensors = {}
        for name, tshape in group:
            if len(tshape) == 1:  # norms and biases
                tensors[name] = torch.ones(tshape, dtype=torch.bfloat16) if name.endswith("norm.weight") else \
                    torch.zeros(tshape, dtype=torch.bfloat16)
            else:
                tensors[name] = _random_bf16(tshape, generator)
            weight_map[name] = shard_name
            total += tensors[name].numel() * 2
        save_file(tensors, str(folder / shard_name), metadata={"format": "pt"})
        del tensors
    if len(names) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    config.save_pretrained(folder)
    gen = {k: getattr(config, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id") if getattr(config, k, None) is not None}
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    for path in tokenizer_dir.iterdir():
        if path.is_file():
            shutil.copy2(path, folder / path.name)
    summary = {"key": key, "shards": names, "tensors": len(specs), "bytes": total,
               "build_s": round(time.perf_counter() - clock, 1)}
    marker.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _random_bf16(shape, generator):
    """N(0, 0.02) in bf16, generated in row blocks so the float32 temporary stays ~64 MiB."""
    import torch

    out = torch.empty(shape, dtype=torch.bfloat16)
    rows_per_block = max(1, (16 * 1024**2) // max(1, _numel(shape[1:])))
    for start in range(0, shape[0], rows_per_block):
        block = out[start:start + rows_per_block]
        block.copy_(torch.randn(block.shape, generator=generator).mul_(0.02))
    return out


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# ---------------------------------------------------------------- safetensors headers (no tensor loaded)


def read_header(path: Path) -> tuple[dict, int]:
    """(header without __metadata__, byte offset where tensor data starts)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}


def shard_paths(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [folder / name for name in dict.fromkeys(weight_map.values())]
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    return sorted(folder.glob("*.safetensors"))


def tensor_table(folder: Path) -> dict[str, dict]:
    """name -> {file, dtype, shape, start, stop (absolute byte offsets), bytes} for every tensor."""
    table = {}
    for path in shard_paths(folder):
        header, base = read_header(path)
        for name, info in header.items():
            start, stop = info["data_offsets"]
            table[name] = {"file": path.name, "dtype": info["dtype"], "shape": info["shape"],
                           "start": base + start, "stop": base + stop, "bytes": stop - start}
    return table


def hash_range(path: Path, start: int, stop: int, chunk: int = 8 * 1024**2) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        left = stop - start
        while left > 0:
            data = f.read(min(chunk, left))
            if not data:
                break
            digest.update(data)
            left -= len(data)
    return digest.hexdigest()


def embedding_keys(folder: Path) -> list[str]:
    """Stored names of the embedding matrices (input first), as the transplant finds them."""
    from transplant.checkpoint import embedding_names

    in_name, out_name, _ = embedding_names(folder)
    return [in_name] + ([out_name] if out_name else [])


# ---------------------------------------------------------------- the bound


def memory_bound(base_dir: Path, donor_dir: Path | None, donor_vocab: int) -> dict:
    """3 x (base, donor-when-read and new embedding bytes, stored dtypes) + the largest base shard."""
    table = tensor_table(base_dir)
    names = embedding_keys(base_dir)
    base_bytes = sum(table[n]["bytes"] for n in names)
    width, itemsize = table[names[0]]["shape"][1], DTYPE_BYTES[table[names[0]]["dtype"]]
    new_bytes = len(names) * donor_vocab * width * itemsize
    donor_bytes = 0
    if donor_dir is not None:
        donor_table = tensor_table(donor_dir)
        donor_bytes = sum(donor_table[n]["bytes"] for n in embedding_keys(donor_dir))
    shard = max(p.stat().st_size for p in shard_paths(base_dir))
    components = {"base_embeddings": base_bytes, "donor_embeddings": donor_bytes, "new_embeddings": new_bytes,
                  "largest_shard": shard}
    return {"components": components, "bound_bytes": 3 * (base_bytes + donor_bytes + new_bytes) + shard}


# ---------------------------------------------------------------- running and sampling


@dataclass
class RunResult:
    returncode: int
    wall_s: float
    peak_rss_bytes: int  # max over samples of the summed RSS of the process and its children
    peak_rss_anon_bytes: int  # same, anonymous memory only (no file pages mapped by safetensors)
    ru_maxrss_bytes: int  # the kernel's high-water mark of the child process itself (exact, unsampled)
    samples: int
    killed_at_cap: bool
    stages: list[dict]  # in order: name, start_s, duration_s, peak_rss_bytes, peak_rss_anon_bytes
    timeline: list[tuple[float, int]]  # (seconds, rss bytes), thinned to at most ~1000 points
    stdout: str
    stderr_tail: list[str]
    peak_stage: str | None = None
    peak_at_s: float | None = None


def _anon_rss(pid: int) -> int | None:
    """RssAnon from /proc (Linux), in bytes: the RSS that is not file pages or shared memory."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run_sampled(command: list[str], interval: float = 0.05, rss_cap: int | None = None,
                env: dict | None = None, echo: bool = True) -> RunResult:
    """Run `command`, sampling the RSS of it and all its descendants every `interval` seconds.
    Lines starting with STAGE_MARK on its stderr open a new stage; every sample is charged to the
    stage open at that time. Past `rss_cap` bytes the whole process group is killed."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    stage = {"name": "start", "t": 0.0}
    stages = [{"name": "start", "start_s": 0.0, "peak_rss_bytes": 0, "peak_rss_anon_bytes": 0}]
    stderr_lines: list[str] = []
    stdout_chunks: list[bytes] = []
    lock = threading.Lock()

    def read_stderr():
        buffer = b""
        for chunk in iter(lambda: os.read(proc.stderr.fileno(), 65536), b""):
            buffer += chunk
            *lines, buffer = buffer.replace(b"\r", b"\n").split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", errors="replace").rstrip()
                if not line:
                    continue
                now = time.perf_counter() - start
                if line.startswith(STAGE_MARK):
                    with lock:
                        stage.update(name=line[len(STAGE_MARK):], t=now)
                        stages.append({"name": stage["name"], "start_s": now, "peak_rss_bytes": 0,
                                       "peak_rss_anon_bytes": 0})
                    if echo:
                        print(f"  [{now:7.1f} s] stage {line[len(STAGE_MARK):]}", file=sys.stderr, flush=True)
                    continue
                stderr_lines.append(line)
                del stderr_lines[:-200]
                if echo:
                    print(f"  [{now:7.1f} s] {line}", file=sys.stderr, flush=True)

    def read_stdout():
        for chunk in iter(lambda: os.read(proc.stdout.fileno(), 65536), b""):
            stdout_chunks.append(chunk)

    readers = [threading.Thread(target=read_stderr, daemon=True), threading.Thread(target=read_stdout, daemon=True)]
    for t in readers:
        t.start()

    done = threading.Event()
    peak = {"rss": 0, "anon": 0, "samples": 0, "killed": False, "t": None, "stage": None}
    timeline: list[tuple[float, int]] = []

    def sample():
        root = psutil.Process(proc.pid)
        while not done.is_set():
            rss = anon = 0
            try:
                family = [root] + root.children(recursive=True)
            except psutil.Error:
                family = []
            for p in family:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    continue
                anon += _anon_rss(p.pid) or 0
            if family and rss:
                now = time.perf_counter() - start
                with lock:
                    current = stages[-1]
                    current["peak_rss_bytes"] = max(current["peak_rss_bytes"], rss)
                    current["peak_rss_anon_bytes"] = max(current["peak_rss_anon_bytes"], anon)
                    if rss > peak["rss"]:
                        peak.update(rss=rss, t=now, stage=current["name"])
                peak["anon"] = max(peak["anon"], anon)
                peak["samples"] += 1
                timeline.append((round(now, 3), rss))
                if rss_cap is not None and rss > rss_cap and not peak["killed"]:
                    peak["killed"] = True
                    print(f"  RSS {rss / GiB:.2f} GiB passed the cap {rss_cap / GiB:.2f} GiB: killing the transplant",
                          file=sys.stderr, flush=True)
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except OSError:
                        pass
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # wait4 gives the child's own peak RSS as the kernel counted it (ru_maxrss, KiB on Linux).
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    for t in readers:
        t.join(timeout=10)
    ru_maxrss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    for i, s in enumerate(stages):
        end = stages[i + 1]["start_s"] if i + 1 < len(stages) else wall
        s["duration_s"] = round(end - s["start_s"], 2)
        s["start_s"] = round(s["start_s"], 2)
    step = max(1, len(timeline) // 1000)
    return RunResult(
        returncode=proc.returncode, wall_s=wall, peak_rss_bytes=peak["rss"], peak_rss_anon_bytes=peak["anon"],
        ru_maxrss_bytes=ru_maxrss, samples=peak["samples"], killed_at_cap=peak["killed"], stages=stages,
        timeline=timeline[::step], stdout=b"".join(stdout_chunks).decode("utf-8", errors="replace"),
        stderr_tail=stderr_lines[-40:], peak_stage=peak["stage"],
        peak_at_s=None if peak["t"] is None else round(peak["t"], 2),
    )


def traced_cli(argv: list[str] | None = None) -> int:
    """`transplant.cli.main` with a STAGE_MARK line on stderr as each pipeline stage starts. The
    pipeline's own functions run unchanged; only thin wrappers are put around them."""
    import functools

    import transplant.pipeline as pipeline
    from transplant.methods import METHODS, MethodSpec

    def mark(name: str) -> None:
        print(STAGE_MARK + name, file=sys.stderr, flush=True)

    def wrap(fn, label, after=None):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            mark(label(*args, **kwargs) if callable(label) else label)
            result = fn(*args, **kwargs)
            if after:
                mark(after)
            return result
        return inner

    pipeline.resolve = wrap(pipeline.resolve, lambda spec, **kw: f"resolve {Path(spec).name}")
    pipeline.load_vocab = wrap(pipeline.load_vocab, "load_vocab")
    pipeline.align = wrap(pipeline.align, "align")
    pipeline.read_embeddings = wrap(pipeline.read_embeddings, lambda folder: f"read_embeddings {Path(folder).name}")
    pipeline.build_matrices = wrap(pipeline.build_matrices, "build_matrices")
    pipeline.write_weights = wrap(pipeline.write_weights, "write_weights", after="configs+tokenizer")
    for name, spec in list(METHODS.items()):
        METHODS[name] = MethodSpec(wrap(spec.fn, f"method {name}"), spec.needs_donor_embeddings, spec.summary)
    from transplant.cli import main

    return main(sys.argv[1:] if argv is None else argv)


# ---------------------------------------------------------------- verification


def verify_output(base_dir: Path, out_dir: Path, donor_vocab: int, hash_all: bool = False, rows: int = 8) -> dict:
    """Check the transplanted folder against the base without loading either model. Returns
    {"ok": bool, "checks": {...}, "problems": [...]}."""
    problems: list[str] = []
    checks: dict = {}
    config = json.loads((out_dir / "config.json").read_text())
    vocab = config.get("text_config", config).get("vocab_size")
    checks["config_vocab_size"] = vocab
    if vocab != donor_vocab:
        problems.append(f"config vocab_size {vocab} != donor vocab {donor_vocab}")

    base_shards = sorted(p.name for p in shard_paths(base_dir))
    out_shards = sorted(p.name for p in shard_paths(out_dir))
    checks["shards"] = len(out_shards)
    if base_shards != out_shards:
        problems.append(f"shard files differ: base {base_shards}, output {out_shards}")
    base_index, out_index = base_dir / "model.safetensors.index.json", out_dir / "model.safetensors.index.json"
    if base_index.is_file() != out_index.is_file():
        problems.append("one folder has model.safetensors.index.json, the other not")
    elif base_index.is_file():
        base_map = json.loads(base_index.read_text())["weight_map"]
        out_map = json.loads(out_index.read_text())["weight_map"]
        if base_map != out_map:
            problems.append("index weight_map differs from the base's")
    base_table, out_table = tensor_table(base_dir), tensor_table(out_dir)
    checks["tensors"] = len(out_table)
    if set(base_table) != set(out_table):
        problems.append(f"tensor names differ: only base {sorted(set(base_table) - set(out_table))[:5]}, "
                        f"only output {sorted(set(out_table) - set(base_table))[:5]}")
    for name in set(base_table) & set(out_table):
        if base_table[name]["file"] != out_table[name]["file"]:
            problems.append(f"{name} moved from {base_table[name]['file']} to {out_table[name]['file']}")

    emb = embedding_keys(base_dir)
    checks["embeddings"] = {}
    for name in emb:
        b, o = base_table[name], out_table.get(name)
        if o is None:
            continue
        checks["embeddings"][name] = {"shape": o["shape"], "dtype": o["dtype"]}
        if o["shape"] != [donor_vocab, b["shape"][1]] or o["dtype"] != b["dtype"]:
            problems.append(f"{name}: {o['dtype']} {o['shape']}, expected {b['dtype']} {[donor_vocab, b['shape'][1]]}")

    others = [n for n in base_table if n not in emb and n in out_table]
    if hash_all:
        chosen = others
    else:  # per shard: its first, its last and its largest non-embedding tensor
        chosen = []
        for shard in base_shards:
            names = sorted((n for n in others if base_table[n]["file"] == shard), key=lambda n: base_table[n]["start"])
            if names:
                chosen += [names[0], names[-1], max(names, key=lambda n: base_table[n]["bytes"])]
        chosen = list(dict.fromkeys(chosen))
    identical = 0
    for name in chosen:
        b, o = base_table[name], out_table[name]
        if (b["dtype"], b["shape"]) != (o["dtype"], o["shape"]):
            problems.append(f"{name}: {o['dtype']} {o['shape']} != base {b['dtype']} {b['shape']}")
            continue
        if hash_range(base_dir / b["file"], b["start"], b["stop"]) != hash_range(out_dir / o["file"], o["start"], o["stop"]):
            problems.append(f"{name}: bytes differ from the base")
            continue
        identical += 1
    checks["hashed_identical"] = f"{identical}/{len(chosen)} of {len(others)} non-embedding tensors"
    checks["hashed_names"] = chosen
    if rows:
        checks["shared_rows_equal"] = _check_shared_rows(base_dir, out_dir, emb, rows, problems)
    return {"ok": not problems, "checks": checks, "problems": problems}


def _check_shared_rows(base_dir: Path, out_dir: Path, emb: list[str], rows: int, problems: list[str]) -> str:
    """A few tokens the two vocabularies share: the output's row must be the base's row, in each head."""
    import numpy as np
    import torch
    from safetensors import safe_open

    from transplant.align import align
    from transplant.vocab import load_vocab

    alignment = align(load_vocab(base_dir), load_vocab(out_dir))
    donor_ids, base_ids = alignment.shared_pairs
    if donor_ids.size == 0:
        problems.append("no shared tokens to check")
        return "0/0"
    picks = np.linspace(0, donor_ids.size - 1, num=min(rows, donor_ids.size)).astype(int)
    base_table, out_table = tensor_table(base_dir), tensor_table(out_dir)
    good = total = 0
    for name in emb:
        with safe_open(base_dir / base_table[name]["file"], "pt") as fb, safe_open(out_dir / out_table[name]["file"], "pt") as fo:
            sb, so = fb.get_slice(name), fo.get_slice(name)
            for i in picks:
                d, b = int(donor_ids[i]), int(base_ids[i])
                total += 1
                if torch.equal(sb[b:b + 1], so[d:d + 1]):
                    good += 1
                else:
                    problems.append(f"{name}: row of shared donor token {d} differs from base row {b}")
    return f"{good}/{total}"


# ---------------------------------------------------------------- the benchmark


def folder_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def bench(workdir: Path, config: BenchConfig, method: str = "fvt", plain: bool = False, rss_cap: int | None = None,
          interval: float = 0.05, threads: int | None = None, hash_all: bool = False, echo: bool = True,
          launcher: list[str] | None = None) -> dict:
    """Build (or reuse) the synthetic checkpoints in `workdir`, transplant, sample, verify. Returns the
    result record; nothing is deleted here. `launcher` replaces the command the CLI arguments are
    appended to (e.g. a script that patches a method, then calls `traced_cli`), to measure a candidate fix."""
    from transplant.methods import METHODS

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    needs_donor = METHODS[method].needs_donor_embeddings
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if echo else (lambda m: None)
    disk_start = shutil.disk_usage(workdir).free

    clock = time.perf_counter()
    base_tok_src, donor_tok_src = find_tokenizer(config.base_tokenizer), find_tokenizer(config.donor_tokenizer)
    base_vocab = prepare_tokenizer(base_tok_src, workdir / "tokenizer-base", config.base_vocab)
    donor_vocab = prepare_tokenizer(donor_tok_src, workdir / "tokenizer-donor", config.donor_vocab)
    say(f"tokenizers: base {base_tok_src} -> {base_vocab} ids, donor {donor_tok_src} -> {donor_vocab} ids")
    base_dir = workdir / "base"
    base_info = write_synthetic_checkpoint(base_dir, config.base, workdir / "tokenizer-base", base_vocab,
                                           config.shard_bytes, config.seed)
    say(f"base checkpoint {base_dir}: {len(base_info['shards'])} shards, {base_info['bytes'] / GiB:.2f} GiB"
        f" ({_built(base_info)})")
    donor_dir = workdir / "donor-tokenizer"
    if needs_donor:
        donor_dir = workdir / "donor"
        donor_info = write_synthetic_checkpoint(donor_dir, config.donor, workdir / "tokenizer-donor", donor_vocab,
                                                config.shard_bytes, config.seed + 1)
        say(f"donor checkpoint {donor_dir}: {donor_info['bytes'] / GiB:.2f} GiB ({_built(donor_info)})")
    else:
        if donor_dir.exists():
            shutil.rmtree(donor_dir)
        shutil.copytree(workdir / "tokenizer-donor", donor_dir)
    prepare_s = time.perf_counter() - clock

    bound = memory_bound(base_dir, donor_dir if needs_donor else None, donor_vocab)
    out_dir = workdir / f"out-{method}"
    cli_args = ["--base", str(base_dir), "--donor-tokenizer", str(donor_dir), "--method", method,
                "-o", str(out_dir), "--overwrite", "--no-progress"]
    if method == "omp":
        cli_args += ["--k", str(config.k)]
        if config.batch_size:
            cli_args += ["--batch-size", str(config.batch_size)]
    if launcher:
        command = [*launcher, *cli_args]
    elif plain:
        command = [sys.executable, "-m", "transplant.cli", *cli_args]
    else:
        command = [sys.executable, "-c", "import sys; from transplant.eval.bench_memory import traced_cli; "
                   "sys.exit(traced_cli())", *cli_args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if rss_cap is None:
        rss_cap = int(psutil.virtual_memory().available - 1.5 * GiB)
    say(f"running: transplant {' '.join(cli_args)}  (RSS sampled every {interval * 1000:.0f} ms, cap {rss_cap / GiB:.1f} GiB)")
    result = run_sampled(command, interval=interval, rss_cap=rss_cap, env=env, echo=echo)
    peak = max(result.peak_rss_bytes, result.ru_maxrss_bytes)

    verification = {"ok": False, "problems": [f"transplant exited with {result.returncode}"], "checks": {}}
    if result.returncode == 0:
        verification = verify_output(base_dir, out_dir, donor_vocab, hash_all=hash_all)
    disk = {"base_bytes": folder_bytes(base_dir), "donor_bytes": folder_bytes(donor_dir),
            "output_bytes": folder_bytes(out_dir), "free_bytes_at_start": disk_start,
            "free_bytes_at_end": shutil.disk_usage(workdir).free}
    record = {
        "method": method,
        "layers": config.base.layers,
        "peak_rss_bytes": peak,
        "bound_bytes": bound["bound_bytes"],
        "components": bound["components"],
        "wall_s": round(result.wall_s, 2),
        "pass": result.returncode == 0 and not result.killed_at_cap and peak < bound["bound_bytes"] and verification["ok"],
        "under_bound": peak < bound["bound_bytes"],
        "peak_rss_sampled_bytes": result.peak_rss_bytes,
        "peak_rss_anon_sampled_bytes": result.peak_rss_anon_bytes,
        "ru_maxrss_bytes": result.ru_maxrss_bytes,
        "peak_stage": result.peak_stage,
        "peak_at_s": result.peak_at_s,
        "samples": result.samples,
        "sample_interval_s": interval,
        "rss_cap_bytes": rss_cap,
        "killed_at_cap": result.killed_at_cap,
        "returncode": result.returncode,
        "stages": result.stages,
        "verification": verification,
        "disk": disk,
        "shape": {"base": asdict(config.base), "donor": asdict(config.donor) if needs_donor else None,
                  "base_vocab": base_vocab, "donor_vocab": donor_vocab, "shard_bytes": config.shard_bytes,
                  "base_shards": base_info["shards"], "k": config.k if method == "omp" else None},
        "tokenizers": {"base": str(base_tok_src), "donor": str(donor_tok_src)},
        "command": " ".join(launcher or [sys.executable] + (["-m", "transplant.cli"] if plain else ["<traced_cli>"]))
        + " " + " ".join(cli_args),
        "prepare_s": round(prepare_s, 1),
        "machine": {"cpus": os.cpu_count(), "ram_bytes": psutil.virtual_memory().total, "threads": threads},
        "stderr_tail": result.stderr_tail[-15:],
        "timeline": result.timeline,
    }
    return record


def _built(info: dict) -> str:
    return "reused" if info.get("reused") else f"built in {info['build_s']} s"


def format_report(r: dict) -> str:
    c = r["components"]

    def g(n):
        return f"{n / GiB:8.2f} GiB"

    lines = [
        f"transplant {r['method']}: synthetic base {r['shape']['base']['hidden']}d x {r['layers']} layers, "
        f"vocab {r['shape']['base_vocab']} -> {r['shape']['donor_vocab']}"
        + (f", OMP k={r['shape']['k']}" if r["shape"]["k"] else ""),
        "",
        f"  {'base embeddings (in+out, stored dtype)':<44}{g(c['base_embeddings'])}",
        f"  {'donor embeddings (in+out, when read)':<44}{g(c['donor_embeddings'])}",
        f"  {'new embeddings (in+out, stored dtype)':<44}{g(c['new_embeddings'])}",
        f"  {'largest base shard':<44}{g(c['largest_shard'])}",
        f"  {'bound = 3 x embeddings + shard':<44}{g(r['bound_bytes'])}",
        f"  {'peak RSS, sampled every %d ms (+children)' % round(r['sample_interval_s'] * 1000):<44}{g(r['peak_rss_sampled_bytes'])}"
        f"   at {r['peak_at_s']} s, stage: {r['peak_stage']}",
        f"  {'  of which anonymous (not file pages)':<44}{g(r['peak_rss_anon_sampled_bytes'])}",
        f"  {'peak RSS, kernel ru_maxrss':<44}{g(r['ru_maxrss_bytes'])}",
        f"  {'peak / bound':<44}{r['peak_rss_bytes'] / r['bound_bytes']:8.2f}",
        f"  {'wall time':<44}{r['wall_s']:8.1f} s",
    ]
    if len(r["stages"]) > 1:
        lines += ["", f"  {'stage':<44}{'start':>8}{'time':>9}{'peak RSS':>13}{'anon':>13}"]
        for s in r["stages"]:
            lines.append(f"  {s['name'][:43]:<44}{s['start_s']:7.1f}s{s['duration_s']:8.1f}s"
                         f"{s['peak_rss_bytes'] / GiB:9.2f} GiB{s['peak_rss_anon_bytes'] / GiB:9.2f} GiB")
    v = r["verification"]
    lines += ["", "  output check: " + ("ok" if v["ok"] else "FAILED"), *(f"    {k}: {val}" for k, val in v["checks"].items() if k != "hashed_names")]
    lines += [f"    problem: {p}" for p in v["problems"][:10]]
    d = r["disk"]
    lines += ["", f"  disk: base {d['base_bytes'] / GiB:.2f} GiB, donor {d['donor_bytes'] / GiB:.2f} GiB, "
              f"output {d['output_bytes'] / GiB:.2f} GiB; free {d['free_bytes_at_start'] / GiB:.1f} GiB at start, "
              f"{d['free_bytes_at_end'] / GiB:.1f} GiB at end"]
    if r["killed_at_cap"]:
        lines.append(f"  the transplant was killed at the safety cap {r['rss_cap_bytes'] / GiB:.1f} GiB: its real peak is higher")
    if r["returncode"] != 0:
        lines += ["  transplant failed:", *(f"    {line}" for line in r["stderr_tail"][-8:])]
    verdict = "PASS" if r["pass"] else "FAIL"
    why = [] if r["pass"] else [
        why for cond, why in [(not r["under_bound"], "peak RSS over the bound"), (r["killed_at_cap"], "killed at cap"),
                              (r["returncode"] != 0, "transplant failed"), (not v["ok"], "output check failed")] if cond]
    lines += ["", f"{verdict}" + (f" ({', '.join(why)})" if why else "") +
              f": peak {r['peak_rss_bytes'] / GiB:.2f} GiB vs bound {r['bound_bytes'] / GiB:.2f} GiB"]
    return "\n".join(lines)


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": GiB, "t": 1024**4}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m transplant.eval.bench_memory", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", help="where the synthetic checkpoints and the output go (default: a new temp folder)")
    p.add_argument("--json", help="write the result record here")
    p.add_argument("--method", default="fvt", help="omp (builds a donor checkpoint too) or fvt (tokenizer-only donor)")
    p.add_argument("--layers", type=int, default=4, help="decoder layers of the synthetic base (default 4)")
    p.add_argument("--k", type=int, default=4, help="OMP anchors per new token (default 4: memory does not depend on it)")
    p.add_argument("--batch-size", type=int, help="OMP batch size (default: the method's)")
    p.add_argument("--shard-size", default="2GiB", help="base shard size (default 2GiB)")
    p.add_argument("--rss-cap", help="kill the transplant past this RSS (default: available memory at start - 1.5GiB)")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the transplant (default: inherited)")
    p.add_argument("--interval", type=float, default=0.05, help="RSS sampling interval in seconds (default 0.05)")
    p.add_argument("--plain", action="store_true", help="run `python -m transplant.cli` without the stage markers")
    p.add_argument("--hash-all", action="store_true", help="compare every non-embedding tensor, not a few")
    p.add_argument("--keep", action="store_true", help="keep the workdir (a later run with the same --workdir reuses the checkpoints)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # building random weights needs no more; the machine may be shared
    config = seven_b_config(layers=args.layers, k=args.k)
    config.batch_size = args.batch_size
    config.shard_bytes = _size(args.shard_size)
    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench_memory-")) if own_workdir else Path(args.workdir)
    existed = workdir.is_dir()
    record = None
    try:
        record = bench(workdir, config, method=args.method, plain=args.plain,
                       rss_cap=_size(args.rss_cap) if args.rss_cap else None, interval=args.interval,
                       threads=args.threads, hash_all=args.hash_all)
        record["workdir"] = str(workdir)
        print(format_report(record))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
            print(f"wrote {args.json}")
    finally:
        if args.keep:
            print(f"kept {workdir} ({folder_bytes(workdir) / GiB:.2f} GiB)")
        elif workdir.is_dir():
            used = folder_bytes(workdir)
            remove_workdir(workdir, whole=own_workdir or not existed)
            print(f"removed {used / GiB:.2f} GiB from {workdir}")
    return 0 if record is not None and record["pass"] else 1


_OWN_ENTRIES = {"base", "donor", "donor-tokenizer", "tokenizer-base", "tokenizer-donor", "out-fvt", "out-omp", "out-mean"}


def remove_workdir(workdir: Path, whole: bool) -> None:
    """Everything when the folder is ours; in a folder the user named, only what `bench` writes there
    (including the hidden temp folder of an interrupted transplant)."""
    if whole:
        shutil.rmtree(workdir, ignore_errors=True)
        return
    for path in workdir.iterdir():
        if path.name in _OWN_ENTRIES or path.name.startswith(".out-"):
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
