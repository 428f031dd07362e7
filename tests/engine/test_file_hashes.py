"""Files' hashes as A1111 computes them (``engine.file_hashes``): the values on known bytes,
each checked against hashlib here, and the cache that hashes a file once per size and mtime."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from engine import file_hashes
from engine.file_hashes import CACHE_NAME, HashCache

TENSOR_DATA = bytes(range(256)) * 5  # what a safetensors file holds after its header


def safetensors_bytes(metadata: dict[str, str] | None = None) -> bytes:
    """A valid safetensors file: 8-byte little-endian header length, JSON header, data."""
    header: dict[str, object] = {
        "w": {"dtype": "U8", "shape": [len(TENSOR_DATA)], "data_offsets": [0, len(TENSOR_DATA)]}
    }
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + TENSOR_DATA


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_sha256_and_model_hash_of_a_known_file(tmp_path: Path) -> None:
    data = b"proofroom checkpoint bytes\n" * 100_000  # several of A1111's 1 MiB blocks
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    assert file_hashes.sha256_of(path, cache_dir=tmp_path / "cache") == sha(data)
    assert file_hashes.short_model_hash(sha(data)) == sha(data)[:10]
    assert file_hashes.model_short_hash(path, cache=HashCache()) == sha(data)[:10]
    assert sha(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    assert file_hashes.model_short_hash(empty, cache=HashCache()) == "e3b0c44298"


def test_lora_hash_of_a_safetensors_file_is_the_addnet_hash_of_its_data(tmp_path: Path) -> None:
    # A1111: NetworkOnDisk hashes with use_addnet_hash=is_safetensors; addnet_hash_safetensors
    # reads n = the first 8 bytes (little endian) and hashes from offset n + 8 to the end.
    data = safetensors_bytes({"ss_output_name": "style"})
    path = tmp_path / "style.safetensors"
    path.write_bytes(data)
    n = int.from_bytes(data[:8], "little")
    addnet = sha(data[n + 8 :])
    assert addnet == sha(TENSOR_DATA) != sha(data)
    cache = HashCache()
    assert cache.addnet(path) == addnet
    assert file_hashes.lora_hash(path, cache=cache) == addnet
    assert file_hashes.lora_short_hash(path, cache=cache) == addnet[:12]
    # Editing the metadata does not change it; the whole-file sha256 changes.
    other = tmp_path / "renamed.safetensors"
    other.write_bytes(safetensors_bytes({"ss_output_name": "another name entirely"}))
    assert file_hashes.lora_short_hash(other, cache=cache) == addnet[:12]
    assert cache.sha256(other) != cache.sha256(path)


def test_lora_hash_from_sshs_model_hash_metadata_wins(tmp_path: Path) -> None:
    # A1111: set_hash(self.metadata.get("sshs_model_hash") or hashes.sha256_from_cache(...))
    kohya = "9f" * 32
    path = tmp_path / "trained.safetensors"
    path.write_bytes(safetensors_bytes({"sshs_model_hash": kohya}))
    assert file_hashes.safetensors_metadata(path) == {"sshs_model_hash": kohya}
    assert file_hashes.lora_short_hash(path, cache=HashCache()) == kohya[:12]


def test_lora_hash_of_a_pt_file_and_embedding_hashes_are_whole_file(tmp_path: Path) -> None:
    pt = tmp_path / "old.pt"
    pt.write_bytes(b"PK\x03\x04 pickled lora" * 50)
    assert file_hashes.lora_short_hash(pt, cache=HashCache()) == sha(pt.read_bytes())[:12]
    # Textual inversion: hashes.sha256(embedding.filename, ...) of the whole file, any format.
    data = safetensors_bytes()
    embedding = tmp_path / "bad-hands.safetensors"
    embedding.write_bytes(data)
    assert file_hashes.embedding_short_hash(embedding, cache=HashCache()) == sha(data)[:12]
    assert file_hashes.embedding_short_hash(pt, cache=HashCache()) == sha(pt.read_bytes())[:12]


def test_addnet_hash_of_a_file_written_by_safetensors(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    from safetensors.numpy import save_file

    path = tmp_path / "real.safetensors"
    save_file({"a": np.arange(300, dtype=np.float32)}, str(path), metadata={"k": "v"})
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    assert json.loads(data[8 : 8 + n])["__metadata__"] == {"k": "v"}
    assert HashCache().addnet(path) == sha(data[8 + n :]) == sha(np.arange(300).astype("<f4"))


def test_each_file_is_hashed_once_and_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"one" * 1000)
    folder = tmp_path / "cache"
    cache = HashCache(folder)
    key = f"sha256:{path.resolve()}"
    first = cache.sha256(path)
    for _ in range(3):
        assert cache.sha256(path) == first
    assert cache.computed == {key: 1}
    # The digest is kept on disk: another process (a new cache on the folder) reads it.
    stored = json.loads((folder / CACHE_NAME).read_text())
    assert stored["files"][key]["hash"] == first
    again = HashCache(folder)
    assert again.sha256(tmp_path / ".." / tmp_path.name / "model.ckpt") == first  # resolved
    assert not again.computed
    # Same size, another mtime: hashed again, and the new content's digest.
    path.write_bytes(b"two" * 1000)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.sha256(path) == sha(b"two" * 1000) != first
    assert cache.computed == {key: 2}
    # Each kind is its own entry: the addnet hash of a file is computed once too.
    lora = tmp_path / "lora.safetensors"
    lora.write_bytes(safetensors_bytes())
    assert cache.sha256(lora) != cache.addnet(lora) == cache.addnet(lora) == sha(TENSOR_DATA)
    assert cache.computed[f"addnet:{lora.resolve()}"] == 1
    assert cache.computed[f"sha256:{lora.resolve()}"] == 1


def test_one_cache_per_folder_and_bad_cache_files_are_ignored(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    assert file_hashes.cache_for(folder) is file_hashes.cache_for(tmp_path / "cache" / ".")
    folder.mkdir()
    (folder / CACHE_NAME).write_text("{not json")
    path = tmp_path / "x.bin"
    path.write_bytes(b"x")
    cache = HashCache(folder)
    assert cache.sha256(path) == sha(b"x")
    assert json.loads((folder / CACHE_NAME).read_text())["format"] == 1  # rewritten whole
    # Entries of files deleted since are dropped on the next write.
    gone = tmp_path / "gone.bin"
    gone.write_bytes(b"g")
    cache.sha256(gone)
    gone.unlink()
    other = tmp_path / "y.bin"
    other.write_bytes(b"y")
    cache.sha256(other)
    files = json.loads((folder / CACHE_NAME).read_text())["files"]
    assert set(files) == {f"sha256:{path.resolve()}", f"sha256:{other.resolve()}"}


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        HashCache().sha256(tmp_path / "nope.safetensors")


def test_the_module_is_light() -> None:
    code = (
        "import sys, engine.file_hashes; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'PIL')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
